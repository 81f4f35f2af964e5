#include "rvenc/client/settings.hpp"

#include <fstream>
#include <sstream>

#include <boost/json/parse.hpp>

#include "rvenc/common/hex.hpp"

namespace rvenc::client {

namespace {
// stack.json is a handful of short fields; anything bigger is not ours.
constexpr std::uintmax_t kMaxStackFileBytes = 64 * 1024;
}  // namespace

Result<std::optional<StackInfo>> read_stack_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::optional<StackInfo>{};
  const std::string where = path.string();
  const auto size = std::filesystem::file_size(path, ec);
  if (ec || size > kMaxStackFileBytes) return fail(Errc::invalid_request, where + ": cannot read it or it is too large");
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) return fail(Errc::invalid_request, where + ": cannot read it");

  boost::system::error_code parse_error;
  const auto value = boost::json::parse(text.str(), parse_error);
  if (parse_error || !value.is_object()) return fail(Errc::invalid_request, where + ": not a JSON object");
  StackInfo info;
  const auto& object = value.as_object();
  for (auto [name, out] : {std::pair{"gatewayUrl", &info.gateway_url}, std::pair{"apiKey", &info.api_key},
                           std::pair{"platformPublicKey", &info.platform_public_key}}) {
    const auto* field = object.if_contains(name);
    if (field == nullptr) continue;
    if (!field->is_string()) return fail(Errc::invalid_request, where + ": " + name + " must be a string");
    *out = std::string(field->as_string());
  }
  if (info.gateway_url.empty()) return fail(Errc::invalid_request, where + ": gatewayUrl is missing");
  return std::optional<StackInfo>{std::move(info)};
}

Result<ClientOptions> resolve_settings(const ClientSettings& settings) {
  ClientSettings resolved = settings;
  if (settings.gateway.empty() && settings.api_key.empty() && settings.platform_public_key.empty()) {
    const bool explicit_dir = !settings.data_dir.empty();
    const std::filesystem::path file =
        std::filesystem::path(explicit_dir ? settings.data_dir : std::string(kDefaultDataDir)) / kStackFileName;
    auto stack = read_stack_file(file);
    if (!stack) return std::unexpected(stack.error());
    if (*stack) {
      resolved.gateway = (*stack)->gateway_url;
      resolved.api_key = (*stack)->api_key;
      resolved.platform_public_key = (*stack)->platform_public_key;
    } else if (explicit_dir) {
      return fail(Errc::invalid_request, file.string() + " does not exist (is `rvenc up --data " + settings.data_dir +
                                             "` running?)");
    }
  }

  ClientOptions options;
  options.base_url = resolved.gateway.empty() ? std::string(kDefaultBaseUrl) : resolved.gateway;
  options.api_key = resolved.api_key;
  if (resolved.protocol < 1 || resolved.protocol > 3) return fail(Errc::invalid_request, "--protocol must be 1, 2 or 3");
  options.protocol_version = static_cast<protocol::Version>(resolved.protocol);
  if (!resolved.platform_public_key.empty()) {
    auto key = from_hex_exact<crypto::kEd25519PublicKeyBytes>(resolved.platform_public_key, "platform public key");
    if (!key) return std::unexpected(key.error());
    options.attestation.simulated_platform_key = *key;
  }
  if (!resolved.measurement.empty()) {
    auto measurement = from_hex(resolved.measurement, "measurement");
    if (!measurement) return std::unexpected(measurement.error());
    options.attestation.expected_measurement = std::move(*measurement);
  }
  return options;
}

}  // namespace rvenc::client
