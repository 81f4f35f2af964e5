// Private helper of rvenc_bench: what every stack that `rvenc bench` starts from the real binary
// (the main bench, `bench replicas`, `bench traffic`) prepares the same way before its first child:
// a private temporary directory, the platform key and gateway token an enclave and its gateway
// share, and an API key made with `rvenc keys create`.
//
// Design: only the steps that are the same in every stack live here; each stack keeps its own
// struct, its own enclave and gateway flags and its own stop order. The secrets are written to
// owner-only files and the platform seed is wiped from memory once its public key is known.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "rvenc/common/error.hpp"
#include "rvenc/crypto/crypto.hpp"

namespace rvenc::bench::detail {

// The model name the bench engines serve and the bench clients ask for.
inline constexpr std::string_view kBenchModel = "bench-model";

// A fresh directory /tmp/<prefix>-XXXXXX (mode 0700); internal_error when none can be made.
[[nodiscard]] Result<std::filesystem::path> make_temp_dir(std::string_view prefix);

struct StackSecrets {
  crypto::Ed25519PublicKey platform_public_key{};  // what the SDK trusts (simulated attestation)
  std::string gateway_token;                       // hex, also in DIR/gateway.token
};

// Writes DIR/platform.key (a fresh Ed25519 seed) and DIR/gateway.token (32 random bytes, hex),
// both readable by their owner only.
[[nodiscard]] StackSecrets write_stack_secrets(const std::filesystem::path& dir);

struct CreatedKey {
  std::string api_key;  // sk_live_... / sk_test_...
  std::string key_id;
};

// `rvenc keys create --db DB --name NAME` (output in DIR/keys.log): the key and its id, or the
// error naming the program and quoting its output.
[[nodiscard]] Result<CreatedKey> create_api_key(const std::string& rvenc, const std::string& db,
                                                const std::string& name, const std::filesystem::path& dir);

}  // namespace rvenc::bench::detail
