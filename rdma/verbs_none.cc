// Verbs streams in a build without rdma-core: every call says so.
#include "rdma/verbs.h"

namespace faha::rdma {
namespace {
Status NotBuilt() {
  return Status::Unavailable("this build has no RDMA support (rdma-core was not installed)");
}
}  // namespace

StatusOr<std::unique_ptr<VerbsStream>> VerbsConnect(const std::string&, int, std::string_view,
                                                    const VerbsOptions&, int) {
  return NotBuilt();
}
StatusOr<std::unique_ptr<VerbsListener>> VerbsListen(const std::string&, int, const VerbsOptions&) {
  return NotBuilt();
}
std::vector<VerbsDeviceInfo> ProbeVerbsDevices(std::string* why) {
  if (why) *why = NotBuilt().message();
  return {};
}
bool VerbsBuiltIn() { return false; }
void SetRemoteAccessGuard(bool (*)(const void*, size_t)) {}
std::string EncodeConnectData(ConnectKind, std::string_view) { return {}; }
bool DecodeConnectData(std::string_view, ConnectKind*, std::string_view*) { return false; }
}  // namespace faha::rdma
