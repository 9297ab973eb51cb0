// faha-cli: a shell for FaHA over the native protocol.
//   faha-cli [-h HOST] [-p PORT] [-a PASSWORD] [--timeout_ms MS] [COMMAND ARGS...]
// With a command it runs it once and prints the reply (exit 1 on an error
// reply or a connection failure); without, it reads commands line by line.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "faha/client.h"

namespace {

void Usage() {
  fprintf(stderr,
          "usage: faha-cli [-h HOST] [-p PORT] [--rdma] [-a PASSWORD] [--timeout_ms MS] [COMMAND "
          "ARGS...]\n"
          "  -h HOST          server host (default 127.0.0.1)\n"
          "  -p PORT          server port (default 7379)\n"
          "  -a PASSWORD      password for AUTH (or set FAHA_PASSWORD)\n"
          "  --rdma           connect over RDMA verbs (rdma://HOST:PORT; HOST must be an\n"
          "                   address of an RDMA device) instead of TCP\n"
          "  --timeout_ms MS  reply timeout (default 5000)\n"
          "Without a command, reads commands from standard input, one per line.\n");
}

// Splits a line into arguments; "double" and 'single' quotes group, \\ escapes in double quotes.
bool SplitLine(const std::string& line, std::vector<std::string>* args, std::string* err) {
  args->clear();
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && isspace(static_cast<unsigned char>(line[i]))) i++;
    if (i >= line.size()) break;
    std::string cur;
    while (i < line.size() && !isspace(static_cast<unsigned char>(line[i]))) {
      char c = line[i];
      if (c == '"' || c == '\'') {
        char q = c;
        i++;
        bool closed = false;
        while (i < line.size()) {
          if (line[i] == q) {
            closed = true;
            i++;
            break;
          }
          if (q == '"' && line[i] == '\\' && i + 1 < line.size()) {
            char e = line[++i];
            cur += e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e;
            i++;
            continue;
          }
          cur += line[i++];
        }
        if (!closed) {
          *err = "unbalanced quotes";
          return false;
        }
      } else {
        cur += c;
        i++;
      }
    }
    args->push_back(cur);
  }
  return true;
}

// Multi-line bulk replies (INFO) print as they are; everything else as redis-cli shows it.
void Print(const faha::Reply& r) {
  if (r.type == faha::Reply::Type::kBulk && r.str.find('\n') != std::string::npos) {
    std::string text = r.str;
    text.erase(std::remove(text.begin(), text.end(), '\r'), text.end());
    fputs(text.c_str(), stdout);
    if (text.empty() || text.back() != '\n') fputc('\n', stdout);
    return;
  }
  printf("%s\n", r.ToString().c_str());
}

// Reads commands from standard input, one a line, until end of input or
// exit/quit. Exit status: 1 if a reply was an error and input is not a
// terminal, or if the connection failed; else 0.
int Interactive(faha::Client* client, const std::string& address) {
  bool tty = isatty(STDIN_FILENO);
  std::string line;
  int rc = 0;
  while (true) {
    if (tty) {
      printf("%s> ", address.c_str());
      fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    std::vector<std::string> args;
    std::string err;
    if (!SplitLine(line, &args, &err)) {
      printf("(error) %s\n", err.c_str());
      continue;
    }
    if (args.empty()) continue;
    if (args.size() == 1 && (args[0] == "exit" || args[0] == "quit")) break;
    auto reply = client->Command(args);
    if (!reply.ok()) {
      fprintf(stderr, "faha-cli: %s\n", reply.status().ToString().c_str());
      return 1;
    }
    Print(*reply);
    fflush(stdout);
    if (reply->type == faha::Reply::Type::kError) rc = 1;
  }
  return tty ? 0 : rc;
}

}  // namespace

int main(int argc, char** argv) {
  faha::ClientOptions opt;
  std::string host = "127.0.0.1", port = "7379", scheme;
  if (const char* pw = getenv("FAHA_PASSWORD")) opt.password = pw;
  int i = 1;
  for (; i < argc; i++) {
    std::string a = argv[i];
    auto need = [&](const char* flag) -> const char* {
      if (i + 1 >= argc) {
        fprintf(stderr, "faha-cli: %s needs a value\n", flag);
        exit(2);
      }
      return argv[++i];
    };
    if (a == "-h") {
      host = need("-h");
    } else if (a == "-p") {
      port = need("-p");
    } else if (a == "--rdma") {
      scheme = "rdma://";
    } else if (a == "-a") {
      opt.password = need("-a");
    } else if (a == "--timeout_ms") {
      opt.op_timeout_ms = atoi(need("--timeout_ms"));
    } else if (a == "--help") {
      Usage();
      return 0;
    } else if (!a.empty() && a[0] == '-' && a.size() > 1) {
      fprintf(stderr, "faha-cli: unknown option %s\n", a.c_str());
      Usage();
      return 2;
    } else {
      break;
    }
  }
  opt.address =
      scheme + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port;
  auto client = faha::Client::Connect(opt);
  if (!client.ok()) {
    fprintf(stderr, "faha-cli: cannot connect to %s: %s\n", opt.address.c_str(),
            client.status().ToString().c_str());
    return 1;
  }
  if (i < argc) {
    std::vector<std::string> args(argv + i, argv + argc);
    auto reply = (*client)->Command(args);
    if (!reply.ok()) {
      fprintf(stderr, "faha-cli: %s\n", reply.status().ToString().c_str());
      return 1;
    }
    Print(*reply);
    return reply->type == faha::Reply::Type::kError ? 1 : 0;
  }
  return Interactive(client->get(), opt.address);
}
