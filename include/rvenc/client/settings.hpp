// Client settings as tools take them (flags, environment, the state `rvenc up` leaves behind) turned
// into ClientOptions, per shared/CLI.md. Each field resolves on its own: flag > environment >
// DIR/stack.json (default ./.rvenc) > built-in default, where an explicit --data counts as a flag
// (its gateway beats RVENC_GATEWAY_URL). The stack file's apiKey, platformPublicKey and caFile are
// used only with that file's own gateway, so a stack's key is never sent to another gateway:
// `rvenc chat --data D --api-key K` talks to D's gateway, trusts D's platform key and sends K.
//
// Design: stack.json decides which gateway and which platform key are trusted, so a file anyone
// else could have written (planted in a shared directory, or left writable) is refused with the
// reason instead of silently trusted; every reader goes through read_stack_file. Whether a stack
// runs is decided by `up`'s lock file (DIR/up.lock, held exclusively for the life of `up`), not
// by stack.json alone: a stack.json left by a killed `up` still says "running": true.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "rvenc/client/client.hpp"
#include "rvenc/common/error.hpp"

namespace rvenc::client {

inline constexpr std::string_view kDefaultDataDir = ".rvenc";
inline constexpr std::string_view kStackFileName = "stack.json";
inline constexpr std::string_view kUpLockFileName = "up.lock";

// The client-side facts of DIR/stack.json.
struct StackInfo {
  std::string gateway_url;
  std::string api_key;
  std::string platform_public_key;  // hex, may be empty
  std::string db;                   // the gateway's database file, may be empty
  // "caFile": the PEM bundle that verifies gatewayUrl when it is https:// (`rvenc up --tls`);
  // made absolute against the file's directory. May be empty.
  std::string ca_file;
  // False when stack.json says "running": false, or when DIR/up.lock exists and no `up` holds it.
  bool running = true;
};

// nullopt when the file does not exist; invalid_request (naming the file) when it is malformed or
// not to be trusted. stack.json says which gateway and platform key to trust, so it is read only
// when the file (and a symbolic link naming it) belongs to this user or root and neither the file
// nor its directory is writable by group or others; the checks are made on the opened file, so
// it cannot be swapped in between. The message says what is wrong and how to fix it.
[[nodiscard]] Result<std::optional<StackInfo>> read_stack_file(const std::filesystem::path& path);

struct ClientSettings {
  std::string gateway;              // empty: stack.json, else kDefaultBaseUrl
  std::string api_key;              // empty: stack.json (with its gateway only)
  std::string platform_public_key;  // hex Ed25519 key trusted for the "simulated" provider
  std::string measurement;          // hex; required measurement when set
  std::string data_dir;             // empty: ./.rvenc (missing stack.json is then fine)
  // PEM bundle for an https:// gateway (--ca-file); empty: stack.json's caFile when the gateway
  // comes from there, else the system trust store.
  std::string ca_file;
  int protocol = 3;
  // --shaping off|pad|cadence (ClientOptions::shaping); empty: the enclave's default.
  std::string shaping;
  // --attestation-policy FILE (docs/attestation.md); empty: the default hardware policy.
  std::string attestation_policy;
  // --attestation-trust-root FILE: PEM roots trusted INSTEAD of the vendors' (tests only).
  std::string attestation_trust_root;
  bool allow_binding_v1 = false;    // accept attestation binding 1 (older enclaves)
  bool gateway_from_env = false;    // `gateway` came from RVENC_GATEWAY_URL, not a flag
  bool data_dir_from_flag = false;  // `data_dir` came from --data, not RVENC_DATA
};

// The hardware trust of `--attestation-policy FILE` and `--attestation-trust-root FILE` (either
// may be empty): invalid_request naming the flag and what is wrong with the file.
struct HardwareTrust {
  attestation::Policy policy;
  std::optional<attestation::TrustAnchors> anchors;  // nullopt: the vendors' pinned roots
};
[[nodiscard]] Result<HardwareTrust> load_hardware_trust(const std::string& policy_file,
                                                        const std::string& trust_root_file);

// `settings` with what its stack file supplies (see the top of this file); errors when an explicit
// DIR has no stack.json, the file may not be trusted, or the stack it names is not running.
[[nodiscard]] Result<ClientSettings> apply_stack_file(const ClientSettings& settings);

// invalid_request naming the setting that is wrong (bad hex, protocol not 1 or 2, unreadable
// stack.json, --data DIR without DIR/stack.json). api_key may stay empty (keygen, attest).
[[nodiscard]] Result<ClientOptions> resolve_settings(const ClientSettings& settings);

}  // namespace rvenc::client
