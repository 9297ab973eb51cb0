// Namespaces: how one log and one index hold Redis's numbered databases and
// FaHA's own state (the function libraries, the database map).
//
// A key of database 0 is stored as it is, so a log written before databases
// existed opens unchanged as database 0. Every other namespace prefixes its
// keys with kReserved and a tag: database n (1-255) with "d" and the byte n,
// the system namespace with another letter. A client cannot name a key that
// begins with kReserved in database 0 (it is refused), so no two namespaces
// ever share a key.
//
// Databases are physical here: SELECT, SWAPDB and MOVE name logical ones,
// which the database map (kDbMapKey, one byte per logical database) turns
// into physical ones; SWAPDB swaps two bytes of it.
#ifndef FAHA_SERVER_ENGINE_NAMESPACES_H_
#define FAHA_SERVER_ENGINE_NAMESPACES_H_

#include <string>
#include <string_view>

namespace faha::ns {

inline constexpr std::string_view kReserved{"\xFF\0FAHA", 6};
inline constexpr int kMaxDatabases = 256;
// Namespace ids: 0..255 the physical databases, kSystem FaHA's own keys.
inline constexpr int kSystem = kMaxDatabases;
inline constexpr int kCount = kMaxDatabases + 1;
// The function libraries (server/commands/cmd_function.cc), one value.
inline const std::string kFunctionsKey = std::string(kReserved) + "F";
// The database map: byte l is the physical database of logical database l.
inline const std::string kDbMapKey = std::string(kReserved) + "M";

inline bool IsReserved(std::string_view key) {
  return key.size() >= kReserved.size() && key[0] == kReserved[0] &&
         key.substr(0, kReserved.size()) == kReserved;
}

// The namespace `key` is in.
inline int Of(std::string_view key) {
  if (!IsReserved(key)) return 0;
  if (key.size() >= kReserved.size() + 2 && key[kReserved.size()] == 'd') {
    const int n = static_cast<unsigned char>(key[kReserved.size() + 1]);
    if (n != 0) return n;
  }
  return kSystem;
}

// What a key of physical database `db` begins with ("" for database 0).
inline std::string DbPrefix(int db) {
  if (db == 0) return {};
  std::string p(kReserved);
  p += 'd';
  p += static_cast<char>(db);
  return p;
}

inline size_t DbPrefixSize(int db) { return db == 0 ? 0 : kReserved.size() + 2; }

// Whether `map` is a database map: 256 bytes, each database once.
inline bool IsDbMap(std::string_view map) {
  if (map.size() != kMaxDatabases) return false;
  bool seen[kMaxDatabases] = {};
  for (char c : map) {
    const auto d = static_cast<unsigned char>(c);
    if (seen[d]) return false;
    seen[d] = true;
  }
  return true;
}

}  // namespace faha::ns

#endif  // FAHA_SERVER_ENGINE_NAMESPACES_H_
