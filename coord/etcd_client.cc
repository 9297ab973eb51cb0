// EtcdClient over etcd's grpc-gateway (JSON over HTTP/1.1). What the gateway
// of etcd 3.4 sends, checked against a live etcd:
//  - bytes fields (keys, values) are base64; int64 fields are JSON strings;
//  - fields holding zero, false or empty are left out: a range that found
//    nothing has no "kvs", an empty value has no "value", a txn whose compare
//    failed has no "succeeded";
//  - errors come as a non-200 status with {"error":..,"message":..,"code":<gRPC code>};
//  - /v3/lease/keepalive is a stream: each request object in the POST body gets
//    one response line {"result":{"ID":..,"TTL":".."}}\n, and the stream ends
//    when the body does; an unknown lease comes back as a result without "TTL";
//  - /v3/lease/timetolive answers "TTL":"-1" for an unknown lease.
// Thread-safety: see etcd_client.h (one mutex around the CURL handle).
#include "coord/etcd_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/mutex.h"

namespace faha::coord {

using nlohmann::json;

namespace {

// --- libcurl's process-wide state -------------------------------------------

std::once_flag g_curl_once;
CURLcode g_curl_init_rc = CURLE_OK;

Status InitCurlOnce() {
  std::call_once(g_curl_once, [] { g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (g_curl_init_rc != CURLE_OK) {
    return Status::IOError(std::string("curl_global_init: ") + curl_easy_strerror(g_curl_init_rc));
  }
  return Status::OK();
}

// --- base64 (RFC 4648, with padding), as the gateway encodes bytes fields ---

constexpr char kBase64Chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string Base64Encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t n = static_cast<uint32_t>(static_cast<uint8_t>(in[i])) << 16 |
                 static_cast<uint32_t>(static_cast<uint8_t>(in[i + 1])) << 8 |
                 static_cast<uint8_t>(in[i + 2]);
    out += kBase64Chars[(n >> 18) & 63];
    out += kBase64Chars[(n >> 12) & 63];
    out += kBase64Chars[(n >> 6) & 63];
    out += kBase64Chars[n & 63];
  }
  if (size_t rest = in.size() - i; rest > 0) {
    uint32_t n = static_cast<uint32_t>(static_cast<uint8_t>(in[i])) << 16;
    if (rest == 2) n |= static_cast<uint32_t>(static_cast<uint8_t>(in[i + 1])) << 8;
    out += kBase64Chars[(n >> 18) & 63];
    out += kBase64Chars[(n >> 12) & 63];
    out += rest == 2 ? kBase64Chars[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// False if `in` is not padded base64.
bool Base64Decode(std::string_view in, std::string* out) {
  out->clear();
  if (in.size() % 4 != 0) return false;
  out->reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    const int pad = last ? (in[i + 3] == '=') + (in[i + 2] == '=') : 0;
    if (pad == 1 && in[i + 2] == '=') return false;  // "x=y=" is not padding
    uint32_t n = 0;
    for (int j = 0; j < 4 - pad; ++j) {
      const int v = Base64Value(in[i + j]);
      if (v < 0) return false;
      n |= static_cast<uint32_t>(v) << (18 - 6 * j);
    }
    out->push_back(static_cast<char>(n >> 16));
    if (pad < 2) out->push_back(static_cast<char>(n >> 8 & 0xff));
    if (pad < 1) out->push_back(static_cast<char>(n & 0xff));
  }
  return true;
}

// --- reading the gateway's JSON; none of these throw ------------------------

// The start of a response body, for error messages.
std::string Snippet(std::string_view body) {
  constexpr size_t kMax = 200;
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.remove_suffix(1);
  return body.size() <= kMax ? std::string(body) : std::string(body.substr(0, kMax)) + "...";
}

// An int64 field, sent as a JSON string (or, leniently, a number); absent = 0.
Status GetInt64(const json& obj, const char* name, int64_t* out) {
  *out = 0;
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return Status::OK();
  if (it->is_number_integer()) {
    *out = it->get<int64_t>();
    return Status::OK();
  }
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
    if (ec == std::errc() && end == s.data() + s.size() && !s.empty()) return Status::OK();
  }
  return Status::Protocol(std::string("etcd sent a bad int64 in \"") + name +
                          "\": " + Snippet(it->dump()));
}

// A bytes field, sent as base64; absent = empty.
Status GetBytes(const json& obj, const char* name, std::string* out) {
  out->clear();
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return Status::OK();
  if (it->is_string() && Base64Decode(it->get_ref<const std::string&>(), out)) {
    return Status::OK();
  }
  return Status::Protocol(std::string("etcd sent bad base64 in \"") + name +
                          "\": " + Snippet(it->dump()));
}

Status ParseKeyValue(const json& j, KeyValue* kv) {
  if (!j.is_object()) return Status::Protocol("etcd sent a key-value that is not an object");
  FAHA_RETURN_IF_ERROR(GetBytes(j, "key", &kv->key));
  FAHA_RETURN_IF_ERROR(GetBytes(j, "value", &kv->value));
  FAHA_RETURN_IF_ERROR(GetInt64(j, "create_revision", &kv->create_revision));
  FAHA_RETURN_IF_ERROR(GetInt64(j, "mod_revision", &kv->mod_revision));
  return GetInt64(j, "lease", &kv->lease);
}

// The "kvs" of a RangeResponse (absent when nothing matched).
Status ParseKvs(const json& range_response, std::vector<KeyValue>* out) {
  out->clear();
  auto it = range_response.find("kvs");
  if (it == range_response.end() || it->is_null()) return Status::OK();
  if (!it->is_array()) return Status::Protocol("etcd sent \"kvs\" that is not an array");
  out->reserve(it->size());
  for (const json& j : *it) {
    KeyValue kv;
    FAHA_RETURN_IF_ERROR(ParseKeyValue(j, &kv));
    out->push_back(std::move(kv));
  }
  return Status::OK();
}

// etcd's gRPC status code and message as a Status.
Status EtcdError(int64_t grpc_code, const std::string& message) {
  const std::string msg =
      message.empty() ? "etcd error (gRPC code " + std::to_string(grpc_code) + ")" : message;
  switch (grpc_code) {
    case 3:   // INVALID_ARGUMENT
    case 9:   // FAILED_PRECONDITION
    case 11:  // OUT_OF_RANGE (e.g. "required revision has been compacted")
      return Status::InvalidArgument(msg);
    case 4:  // DEADLINE_EXCEEDED
      return Status::Timeout(msg);
    case 5:  // NOT_FOUND
      return Status::NotFound(msg);
    case 7:   // PERMISSION_DENIED
    case 16:  // UNAUTHENTICATED
      return Status::Auth(msg);
    case 8:  // RESOURCE_EXHAUSTED
      return Status::Busy(msg);
    case 14:  // UNAVAILABLE ("etcdserver: no leader", ...)
      return Status::Unavailable(msg);
    default:
      return Status::ServerError(msg);
  }
}

// The error an answer carries, if any: a unary call's
// {"error":"..","message":"..","code":N}, or a stream's
// {"error":{"grpc_code":N,"message":".."}}.
std::optional<Status> ErrorIn(const json& j) {
  auto it = j.find("error");
  if (it == j.end() || it->is_null()) return std::nullopt;
  const json* e = &j;
  const char* code_field = "code";
  if (it->is_object()) {
    e = &*it;
    code_field = "grpc_code";
  }
  std::string message;
  if (auto m = e->find("message"); m != e->end() && m->is_string()) message = m->get<std::string>();
  if (message.empty() && it->is_string()) message = it->get<std::string>();
  int64_t code = 2;  // UNKNOWN
  if (auto c = e->find(code_field); c != e->end() && c->is_number_integer()) {
    code = c->get<int64_t>();
  } else if (message.empty()) {
    return std::nullopt;  // an empty "error" string: not an error
  }
  return EtcdError(code, message);
}

// --- one HTTP round trip ----------------------------------------------------

size_t AppendToString(char* data, size_t size, size_t nmemb, void* userdata) {
  static_cast<std::string*>(userdata)->append(data, size * nmemb);
  return size * nmemb;
}

struct Attempt {
  Status status;
  bool sent = false;     // any byte of the request went out: etcd may have applied it
  bool reached = false;  // etcd answered (with an error status or body)
  json response;
};

// The text of a libcurl failure: "etcd URL: <curl_easy_strerror> (<detail>)".
std::string CurlErrorText(const std::string& url, CURLcode rc, const char* errbuf) {
  std::string text = "etcd " + url + ": " + curl_easy_strerror(rc);
  if (errbuf[0] != '\0') text += std::string(" (") + errbuf + ")";
  return text;
}

}  // namespace

// --- the client -------------------------------------------------------------

struct EtcdClient::CurlHandle {
  struct SlistFree {
    void operator()(curl_slist* l) const { curl_slist_free_all(l); }
  };
  struct EasyCleanup {
    void operator()(CURL* c) const { curl_easy_cleanup(c); }
  };
  // In creation order: the easy handle points at the header list, so it goes first.
  std::unique_ptr<curl_slist, SlistFree> headers;
  std::unique_ptr<CURL, EasyCleanup> easy;
  char errbuf[CURL_ERROR_SIZE] = {};
  std::string body;  // the response being received

  // One POST of `request` to `url`, bounded by total_ms, connecting within connect_ms.
  Attempt Post(const std::string& url, const std::string& request, int64_t total_ms,
               int64_t connect_ms, bool streaming);
};

Attempt EtcdClient::CurlHandle::Post(const std::string& url, const std::string& request,
                                     int64_t total_ms, int64_t connect_ms, bool streaming) {
  Attempt a;
  CURL* c = easy.get();
  body.clear();
  errbuf[0] = '\0';
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.size()));
  // Both must be > 0: 0 would mean "no limit" / "the 300 s default".
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<int64_t>(total_ms, 1)));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::max<int64_t>(std::min(connect_ms, total_ms), 1)));
  const CURLcode rc = curl_easy_perform(c);
  long request_size = 0;
  curl_easy_getinfo(c, CURLINFO_REQUEST_SIZE, &request_size);
  a.sent = request_size > 0;
  if (rc != CURLE_OK) {
    const std::string text = CurlErrorText(url, rc, errbuf);
    // A request that never left cannot have been applied: Unavailable. One that
    // left and was not answered in time has an unknown outcome: Timeout.
    a.status = rc == CURLE_OPERATION_TIMEDOUT && a.sent ? Status::Timeout(text)
                                                        : Status::Unavailable(text);
    return a;
  }
  a.reached = true;
  long http = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);

  std::string_view text = body;
  if (streaming) {
    // A stream's messages are one JSON object per line; we sent one request,
    // so the first line is its answer.
    const size_t start = text.find_first_not_of(" \t\r\n");
    text = start == std::string_view::npos ? std::string_view() : text.substr(start);
    text = text.substr(0, text.find('\n'));
  }
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  const bool is_object = j.is_object();
  if (is_object) {
    if (std::optional<Status> err = ErrorIn(j)) {
      a.status = err->WithPrefix("etcd " + url + ": ");
      return a;
    }
  }
  if (http != 200) {
    a.status = Status::ServerError("etcd " + url + ": HTTP " + std::to_string(http) + ": " +
                                   Snippet(body));
    return a;
  }
  if (!is_object) {
    a.status = Status::Protocol("etcd " + url + " sent unparseable JSON: " + Snippet(body));
    return a;
  }
  if (streaming) {
    auto it = j.find("result");
    if (it == j.end() || !it->is_object()) {
      a.status = Status::Protocol("etcd " + url +
                                  " sent a stream message without \"result\": " + Snippet(body));
      return a;
    }
    json result = std::move(*it);
    j = std::move(result);
  }
  a.response = std::move(j);
  return a;
}

StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(const std::string& endpoints,
                                                         int timeout_ms) {
  if (timeout_ms <= 0) return Status::InvalidArgument("etcd timeout_ms must be > 0");
  std::vector<std::string> list;
  size_t pos = 0;
  while (pos <= endpoints.size()) {
    size_t comma = endpoints.find(',', pos);
    if (comma == std::string::npos) comma = endpoints.size();
    std::string e = endpoints.substr(pos, comma - pos);
    const size_t first = e.find_first_not_of(" \t");
    const size_t last = e.find_last_not_of(" \t/");
    e = first == std::string::npos ? std::string() : e.substr(first, last - first + 1);
    if (!e.starts_with("http://") && !e.starts_with("https://")) {
      return Status::InvalidArgument("etcd endpoint \"" + e +
                                     "\" is not an http:// or https:// URL (in \"" + endpoints +
                                     "\")");
    }
    list.push_back(std::move(e));
    pos = comma + 1;
  }
  FAHA_RETURN_IF_ERROR(InitCurlOnce());

  auto curl = std::make_unique<CurlHandle>();
  curl->headers.reset(curl_slist_append(nullptr, "Content-Type: application/json"));
  curl_slist* h = curl->headers ? curl_slist_append(curl->headers.get(), "Expect:") : nullptr;
  curl->easy.reset(curl_easy_init());
  if (h == nullptr || !curl->easy) return Status::IOError("curl_easy_init failed");
  CURL* c = curl->easy.get();
  // Timeouts must not use SIGALRM: we run inside a multi-threaded server.
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, curl->headers.get());
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  // Talk to etcd directly even if http_proxy is set in the environment: a
  // proxy would hide connection failures behind its own HTTP errors.
  curl_easy_setopt(c, CURLOPT_PROXY, "");
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl->errbuf);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &AppendToString);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &curl->body);
  return std::unique_ptr<EtcdClient>(new EtcdClient(std::move(list), timeout_ms, std::move(curl)));
}

EtcdClient::EtcdClient(std::vector<std::string> endpoints, int timeout_ms,
                       std::unique_ptr<CurlHandle> curl)
    : endpoints_(std::move(endpoints)), timeout_ms_(timeout_ms), curl_(std::move(curl)) {}

EtcdClient::~EtcdClient() = default;

const std::string& EtcdClient::endpoint() const {
  MutexLock lock(&mu_);
  return endpoints_[current_];
}

StatusOr<json> EtcdClient::Call(std::string_view path, const json& request, Retry retry,
                                bool streaming) {
  std::string payload;
  try {
    payload = request.dump();
  } catch (const json::exception& e) {
    return Status::InvalidArgument(std::string("etcd request not encodable: ") + e.what());
  }
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms_);
  MutexLock lock(&mu_);
  const size_t n = endpoints_.size();
  Status failure;
  std::string failures;  // what each endpoint tried said, for the final error
  for (size_t tried = 0; tried < n; ++tried) {
    const int64_t remaining_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (remaining_ms <= 0) break;
    // Leave the endpoints after this one a share of the time to connect, so
    // one black-holed endpoint cannot use up the whole call.
    const int64_t connect_ms = remaining_ms / static_cast<int64_t>(n - tried);
    const size_t index = (current_ + tried) % n;
    const std::string url = endpoints_[index] + std::string(path);
    Attempt a = curl_->Post(url, payload, remaining_ms, connect_ms, streaming);
    if (a.status.ok()) {
      current_ = index;
      return std::move(a.response);
    }
    const bool etcd_unavailable = a.reached && a.status.code() == Status::Code::kUnavailable;
    const bool may_retry = (!a.reached && (!a.sent || retry == Retry::kAlways)) ||
                           (etcd_unavailable && retry == Retry::kAlways);
    if (!may_retry) {
      current_ = index;
      // etcd's UNAVAILABLE also covers "request timed out" and "leader
      // changed", after which a write may still be applied: its outcome is
      // unknown, which is what Timeout means here.
      if (etcd_unavailable) return Status::Timeout(a.status.message() + " (outcome unknown)");
      return a.status;
    }
    if (!failures.empty()) failures += "; ";
    failures += a.status.message();
    failure = a.status;
  }
  if (failure.ok()) {
    return Status::Timeout("etcd " + std::string(path) + ": no answer within " +
                           std::to_string(timeout_ms_) + " ms");
  }
  return failure.code() == Status::Code::kTimeout ? Status::Timeout(failures)
                                                  : Status::Unavailable(failures);
}

StatusOr<int64_t> EtcdClient::GrantLease(int64_t ttl_s, int64_t* granted_ttl_s) {
  if (ttl_s <= 0) return Status::InvalidArgument("lease TTL must be > 0 s");
  try {
    StatusOr<json> r = Call("/v3/lease/grant", {{"TTL", std::to_string(ttl_s)}}, Retry::kIfNotSent);
    if (!r.ok()) return r.status();
    int64_t id = 0, ttl = 0;
    FAHA_RETURN_IF_ERROR(GetInt64(*r, "ID", &id));
    FAHA_RETURN_IF_ERROR(GetInt64(*r, "TTL", &ttl));
    if (id == 0) return Status::Protocol("etcd granted a lease without an ID");
    if (granted_ttl_s != nullptr) *granted_ttl_s = ttl;
    return id;
  } catch (const json::exception& e) {
    return Status::Protocol(std::string("etcd lease grant: ") + e.what());
  }
}

StatusOr<int64_t> EtcdClient::KeepAliveOnce(int64_t lease_id) {
  try {
    StatusOr<json> r = Call("/v3/lease/keepalive", {{"ID", std::to_string(lease_id)}},
                            Retry::kAlways, /*streaming=*/true);
    if (!r.ok()) return r.status();
    int64_t ttl = 0;
    FAHA_RETURN_IF_ERROR(GetInt64(*r, "TTL", &ttl));
    // etcd answers an unknown lease with TTL 0, which the gateway leaves out.
    if (ttl <= 0) {
      return Status::NotFound("etcd lease " + std::to_string(lease_id) +
                              " not found (expired or revoked)");
    }
    return ttl;
  } catch (const json::exception& e) {
    return Status::Protocol(std::string("etcd lease keepalive: ") + e.what());
  }
}

Status EtcdClient::RevokeLease(int64_t lease_id) {
  try {
    StatusOr<json> r = Call("/v3/lease/revoke", {{"ID", std::to_string(lease_id)}}, Retry::kAlways);
    if (!r.ok() && !r.status().IsNotFound()) return r.status();
    return Status::OK();
  } catch (const json::exception& e) {
    return Status::Protocol(std::string("etcd lease revoke: ") + e.what());
  }
}

StatusOr<int64_t> EtcdClient::LeaseTimeToLive(int64_t lease_id) {
  try {
    StatusOr<json> r =
        Call("/v3/lease/timetolive", {{"ID", std::to_string(lease_id)}}, Retry::kAlways);
    if (!r.ok()) return r.status();
    int64_t ttl = 0;
    FAHA_RETURN_IF_ERROR(GetInt64(*r, "TTL", &ttl));
    if (ttl < 0) return Status::NotFound("etcd lease " + std::to_string(lease_id) + " not found");
    return ttl;
  } catch (const json::exception& e) {
    return Status::Protocol(std::string("etcd lease timetolive: ") + e.what());
  }
}

StatusOr<std::optional<KeyValue>> EtcdClient::Get(const std::string& key) {
  try {
    StatusOr<json> r = Call("/v3/kv/range", {{"key", Base64Encode(key)}}, Retry::kAlways);
    if (!r.ok()) return r.status();
    std::vector<KeyValue> kvs;
    FAHA_RETURN_IF_ERROR(ParseKvs(*r, &kvs));
    if (kvs.empty()) return std::optional<KeyValue>();
    return std::optional<KeyValue>(std::move(kvs.front()));
  } catch (const json::exception& e) {
    return Status::Protocol(std::string("etcd range: ") + e.what());
  }
}

StatusOr<std::vector<KeyValue>> EtcdClient::GetPrefix(const std::string& prefix) {
  // The range [prefix, range_end) where range_end is the prefix with its last
  // byte below 0xff incremented and the rest dropped; "\0" as range_end means
  // "to the end", and etcd rejects an empty key, so "" scans from "\0".
  std::string start = prefix.empty() ? std::string(1, '\0') : prefix;
  std::string end = prefix;
  while (!end.empty() && static_cast<uint8_t>(end.back()) == 0xff) end.pop_back();
  if (end.empty()) {
    end.assign(1, '\0');
  } else {
    end.back() = static_cast<char>(static_cast<uint8_t>(end.back()) + 1);
  }
  try {
    // Without a sort order etcd returns the range in key order.
    StatusOr<json> r =
        Call("/v3/kv/range", {{"key", Base64Encode(start)}, {"range_end", Base64Encode(end)}},
             Retry::kAlways);
    if (!r.ok()) return r.status();
    std::vector<KeyValue> kvs;
    FAHA_RETURN_IF_ERROR(ParseKvs(*r, &kvs));
    return kvs;
  } catch (const json::exception& e) {
    return Status::Protocol(std::string("etcd range: ") + e.what());
  }
}

Status EtcdClient::Put(const std::string& key, const std::string& value, int64_t lease) {
  try {
    json req = {{"key", Base64Encode(key)}, {"value", Base64Encode(value)}};
    if (lease != 0) req["lease"] = std::to_string(lease);
    StatusOr<json> r = Call("/v3/kv/put", req, Retry::kIfNotSent);
    return r.status();
  } catch (const json::exception& e) {
    return Status::Protocol(std::string("etcd put: ") + e.what());
  }
}

StatusOr<bool> EtcdClient::CompareAndSwap(const std::string& key, int64_t expected_mod_revision,
                                          const std::string& value, int64_t lease,
                                          std::optional<KeyValue>* current) {
  if (expected_mod_revision < 0) {
    return Status::InvalidArgument("expected_mod_revision must be >= 0");
  }
  try {
    const std::string k = Base64Encode(key);
    // An absent key has mod_revision 0 too, so "must not exist" compares the
    // create revision, which is 0 only for an absent key.
    json compare =
        expected_mod_revision == 0
            ? json{{"target", "CREATE"}, {"key", k}, {"result", "EQUAL"}, {"create_revision", "0"}}
            : json{{"target", "MOD"},
                   {"key", k},
                   {"result", "EQUAL"},
                   {"mod_revision", std::to_string(expected_mod_revision)}};
    json put = {{"key", k}, {"value", Base64Encode(value)}};
    if (lease != 0) put["lease"] = std::to_string(lease);
    json txn = {{"compare", json::array({std::move(compare)})},
                {"success", json::array({json{{"request_put", std::move(put)}}})}};
    if (current != nullptr) {
      txn["failure"] = json::array({json{{"request_range", json{{"key", k}}}}});
    }
    StatusOr<json> r = Call("/v3/kv/txn", txn, Retry::kIfNotSent);
    if (!r.ok()) return r.status();
    auto succeeded = r->find("succeeded");
    if (succeeded != r->end() && succeeded->is_boolean() && succeeded->get<bool>()) return true;
    if (current == nullptr) return false;
    // The failure branch's one response: {"response_range":{..,"kvs":[..]}}.
    auto responses = r->find("responses");
    if (responses == r->end() || !responses->is_array() || responses->size() != 1 ||
        !(*responses)[0].contains("response_range")) {
      return Status::Protocol("etcd txn failed without the range it asked for: " +
                              Snippet(r->dump()));
    }
    std::vector<KeyValue> kvs;
    FAHA_RETURN_IF_ERROR(ParseKvs((*responses)[0]["response_range"], &kvs));
    *current = kvs.empty() ? std::nullopt : std::optional<KeyValue>(std::move(kvs.front()));
    return false;
  } catch (const json::exception& e) {
    return Status::Protocol(std::string("etcd txn: ") + e.what());
  }
}

Status EtcdClient::Delete(const std::string& key) {
  try {
    StatusOr<json> r = Call("/v3/kv/deleterange", {{"key", Base64Encode(key)}}, Retry::kIfNotSent);
    return r.status();
  } catch (const json::exception& e) {
    return Status::Protocol(std::string("etcd deleterange: ") + e.what());
  }
}

}  // namespace faha::coord
