#include "stack_setup.hpp"

#include <stdlib.h>

#include <span>

#include "rvenc/bench/process.hpp"
#include "rvenc/common/hex.hpp"

namespace rvenc::bench::detail {

namespace {
constexpr std::size_t kGatewayTokenBytes = 32;
}  // namespace

Result<std::filesystem::path> make_temp_dir(std::string_view prefix) {
  std::string path_template = "/tmp/" + std::string(prefix) + "-XXXXXX";
  if (!::mkdtemp(path_template.data())) return fail(Errc::internal_error, "cannot create a temporary directory");
  return std::filesystem::path(path_template);
}

StackSecrets write_stack_secrets(const std::filesystem::path& dir) {
  StackSecrets secrets;
  auto seed = crypto::random_array<crypto::kEd25519SeedBytes>();
  write_secret(dir / "platform.key", crypto::as_chars(seed));
  secrets.platform_public_key =
      crypto::ed25519_keypair_from_seed(crypto::Ed25519Seed(std::span<const std::uint8_t, 32>(seed))).public_key;
  crypto::secure_wipe(seed.data(), seed.size());
  secrets.gateway_token = to_hex(crypto::random_array<kGatewayTokenBytes>());
  write_secret(dir / "gateway.token", secrets.gateway_token);
  return secrets;
}

Result<CreatedKey> create_api_key(const std::string& rvenc, const std::string& db, const std::string& name,
                                  const std::filesystem::path& dir) {
  ChildProcess keys({rvenc, "keys", "create", "--db", db, "--name", name}, dir / "keys.log");
  auto api_key = keys.wait_for(R"(^(sk_(live|test)_\S+))");
  if (!api_key) return std::unexpected(api_key.error());
  auto key_id = keys.wait_for(R"(created key (\S+))");
  if (!key_id) return std::unexpected(key_id.error());
  keys.wait_exit(kChildStartTimeout);
  return CreatedKey{std::move(*api_key), std::move(*key_id)};
}

}  // namespace rvenc::bench::detail
