#include "rvenc/client/settings.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include <boost/json/parse.hpp>

#include "rvenc/common/hex.hpp"

namespace rvenc::client {

namespace {
// stack.json is a handful of short fields; anything bigger is not ours.
constexpr std::uintmax_t kMaxStackFileBytes = 64 * 1024;
constexpr mode_t kGroupOtherWrite = S_IWGRP | S_IWOTH;

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& other) noexcept : fd(std::exchange(other.fd, -1)) {}
  Fd& operator=(Fd&&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string octal_mode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "0%03o", static_cast<unsigned>(mode & 07777));
  return text;
}

std::string errno_text() { return std::strerror(errno); }

bool trusted_owner(uid_t uid) { return uid == ::geteuid() || uid == 0; }

// Why `path` (stack.json, its directory, or the symbolic link naming it; `note` says which) may
// not be trusted, if so.
Status check_owner_and_mode(const struct stat& st, const std::string& path, std::string_view note = {}) {
  const std::string what = path + std::string(note);
  if (!trusted_owner(st.st_uid))
    return fail(Errc::invalid_request, what + " is owned by uid " + std::to_string(st.st_uid) + ", not you (uid " +
                                           std::to_string(::geteuid()) + ") or root");
  // A symbolic link's own mode means nothing (always 0777); only its owner can repoint it.
  if (!S_ISLNK(st.st_mode) && (st.st_mode & kGroupOtherWrite) != 0)
    return fail(Errc::invalid_request, what + " is writable by group/others (mode " + octal_mode(st.st_mode) +
                                           "); fix with chmod go-w " + path);
  return {};
}

// Opens `name` in `dir` for reading, following a symbolic link only when one we trust names it;
// nullopt when there is no such file.
Result<std::optional<Fd>> open_trusted(int dir, const std::string& name, const std::string& where) {
  constexpr int kFlags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;  // O_NONBLOCK: a planted FIFO cannot block us
  Fd file{::openat(dir, name.c_str(), kFlags | O_NOFOLLOW)};
  if (file.fd < 0 && errno == ELOOP) {
    struct stat link {};
    if (::fstatat(dir, name.c_str(), &link, AT_SYMLINK_NOFOLLOW) != 0)
      return fail(Errc::invalid_request, where + ": cannot read it: " + errno_text());
    if (auto ok = check_owner_and_mode(link, where, " (a symbolic link)"); !ok) return std::unexpected(ok.error());
    file.fd = ::openat(dir, name.c_str(), kFlags);
  }
  if (file.fd < 0) {
    if (errno == ENOENT) return std::optional<Fd>{};
    return fail(Errc::invalid_request, where + ": cannot open it: " + errno_text());
  }
  return std::optional<Fd>{std::move(file)};
}

// The text of an opened stack.json we may trust (see read_stack_file).
Result<std::string> read_trusted(const Fd& file, const Fd& dir, const std::string& where, const std::string& dir_name) {
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) return fail(Errc::invalid_request, where + ": cannot read it: " + errno_text());
  if (!S_ISREG(st.st_mode)) return fail(Errc::invalid_request, where + " is not a regular file");
  if (auto ok = check_owner_and_mode(st, where); !ok) return std::unexpected(ok.error());
  struct stat dir_st {};
  if (::fstat(dir.fd, &dir_st) != 0) return fail(Errc::invalid_request, dir_name + ": cannot read it: " + errno_text());
  if (auto ok = check_owner_and_mode(dir_st, dir_name, " (the directory of " + where + ")"); !ok)
    return std::unexpected(ok.error());
  if (static_cast<std::uintmax_t>(st.st_size) > kMaxStackFileBytes)
    return fail(Errc::invalid_request, where + ": it is too large");
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(file.fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(Errc::invalid_request, where + ": cannot read it");
    got += static_cast<std::size_t>(n);
  }
  return text;
}

// Whether an `up` holds `dir`/up.lock: a shared non-blocking try-lock fails while one does. A
// missing lock file answers `fallback`: no lock-taking `up` wrote that stack.json (it has no "running").
bool up_lock_held(int dir, bool fallback) {
  Fd lock{::openat(dir, std::string(kUpLockFileName).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)};
  if (lock.fd < 0) return errno == ENOENT ? fallback : true;  // unreadable: let the connection tell
  if (::flock(lock.fd, LOCK_SH | LOCK_NB) == 0) return false;  // released when `lock` closes
  return errno == EWOULDBLOCK;
}

}  // namespace

Result<std::optional<StackInfo>> read_stack_file(const std::filesystem::path& path) {
  const std::string where = path.string();
  const std::filesystem::path parent = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  Fd dir{::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (dir.fd < 0) {
    if (errno == ENOENT) return std::optional<StackInfo>{};
    return fail(Errc::invalid_request, parent.string() + ": cannot open it: " + errno_text());
  }
  auto file = open_trusted(dir.fd, path.filename().string(), where);
  if (!file) return std::unexpected(file.error());
  if (!*file) return std::optional<StackInfo>{};
  auto text = read_trusted(**file, dir, where, parent.string());
  if (!text) return std::unexpected(text.error());

  boost::system::error_code parse_error;
  const auto value = boost::json::parse(*text, parse_error);
  if (parse_error || !value.is_object()) return fail(Errc::invalid_request, where + ": not a JSON object");
  StackInfo info;
  const auto& object = value.as_object();
  for (auto [name, out] : {std::pair{"gatewayUrl", &info.gateway_url}, std::pair{"apiKey", &info.api_key},
                           std::pair{"platformPublicKey", &info.platform_public_key}, std::pair{"db", &info.db},
                           std::pair{"caFile", &info.ca_file}}) {
    const auto* field = object.if_contains(name);
    if (field == nullptr) continue;
    if (!field->is_string()) return fail(Errc::invalid_request, where + ": " + name + " must be a string");
    *out = std::string(field->as_string());
  }
  if (info.gateway_url.empty()) return fail(Errc::invalid_request, where + ": gatewayUrl is missing");
  if (!info.ca_file.empty() && std::filesystem::path(info.ca_file).is_relative())
    info.ca_file = (parent / info.ca_file).string();
  if (const auto* running = object.if_contains("running")) {
    if (!running->is_bool()) return fail(Errc::invalid_request, where + ": running must be true or false");
    info.running = running->as_bool();
  }
  info.running = info.running && up_lock_held(dir.fd, !object.contains("running"));
  return std::optional<StackInfo>{std::move(info)};
}

namespace {

std::string without_trailing_slash(std::string url) {
  while (url.size() > 1 && url.back() == '/') url.pop_back();
  return url;
}

// The stack file of `settings` (DIR/stack.json, ./.rvenc/stack.json without --data); nullopt when
// there is none. An explicit DIR without stack.json is an error unless the gateway is given by flag.
Result<std::optional<StackInfo>> settings_stack(const ClientSettings& settings) {
  const bool explicit_dir = !settings.data_dir.empty();
  const std::string dir = explicit_dir ? settings.data_dir : std::string(kDefaultDataDir);
  const std::filesystem::path file = std::filesystem::path(dir) / kStackFileName;
  auto stack = read_stack_file(file);
  if (!stack) return std::unexpected(stack.error());
  const bool gateway_by_flag = !settings.gateway.empty() && !settings.gateway_from_env;
  if (!*stack && explicit_dir && !gateway_by_flag)
    return fail(Errc::invalid_request,
                file.string() + " does not exist (is `rvenc up --data " + settings.data_dir + "` running?)");
  return stack;
}

}  // namespace

Result<ClientSettings> apply_stack_file(const ClientSettings& settings) {
  ClientSettings resolved = settings;
  // A gateway given (flag or variable) without --data: the default stack file is not read (its key
  // could only go with its own gateway, and a stray ./.rvenc must not fail an explicit command).
  if (settings.data_dir.empty() && !settings.gateway.empty()) return resolved;
  auto stack = settings_stack(settings);
  if (!stack) return std::unexpected(stack.error());
  if (!*stack) return resolved;
  const StackInfo& info = **stack;
  // The gateway: a flag beats everything, an explicit --data beats the environment.
  const bool use_stack_gateway =
      settings.gateway.empty() || (settings.gateway_from_env && settings.data_dir_from_flag);
  if (use_stack_gateway) {
    if (!info.running) {
      const std::string dir = settings.data_dir.empty() ? std::string(kDefaultDataDir) : settings.data_dir;
      return fail(Errc::transport_error,
                  "the stack in " + dir + " is not running (start it with rvenc up --data " + dir + ")");
    }
    resolved.gateway = info.gateway_url;
  }
  // The stack's key, platform key and CA file belong to its gateway: never sent anywhere else.
  if (without_trailing_slash(resolved.gateway) != without_trailing_slash(info.gateway_url)) return resolved;
  if (resolved.api_key.empty()) resolved.api_key = info.api_key;
  if (resolved.platform_public_key.empty()) resolved.platform_public_key = info.platform_public_key;
  if (resolved.ca_file.empty()) resolved.ca_file = info.ca_file;
  return resolved;
}

Result<HardwareTrust> load_hardware_trust(const std::string& policy_file, const std::string& trust_root_file) {
  HardwareTrust trust;
  if (!policy_file.empty()) {
    auto policy = attestation::load_policy(policy_file);
    if (!policy) return fail(Errc::invalid_request, "--attestation-policy: " + policy.error().message);
    trust.policy = std::move(*policy);
  }
  if (!trust_root_file.empty()) {
    auto anchors = attestation::load_trust_anchors(trust_root_file);
    if (!anchors) return fail(Errc::invalid_request, "--attestation-trust-root: " + anchors.error().message);
    trust.anchors = std::move(*anchors);
  }
  return trust;
}

Result<ClientOptions> resolve_settings(const ClientSettings& settings) {
  auto with_stack = apply_stack_file(settings);
  if (!with_stack) return std::unexpected(with_stack.error());
  const ClientSettings& resolved = *with_stack;

  ClientOptions options;
  options.base_url = resolved.gateway.empty() ? std::string(kDefaultBaseUrl) : resolved.gateway;
  options.api_key = resolved.api_key;
  options.ca_file = resolved.ca_file;
  if (resolved.protocol < 1 || resolved.protocol > 3) return fail(Errc::invalid_request, "--protocol must be 1, 2 or 3");
  options.protocol_version = static_cast<protocol::Version>(resolved.protocol);
  if (!resolved.shaping.empty()) {
    options.shaping = protocol::shaping_mode_from_name(resolved.shaping);
    if (!options.shaping) return fail(Errc::invalid_request, "--shaping must be off, pad or cadence");
  }
  if (!resolved.platform_public_key.empty()) {
    auto key = from_hex_exact<crypto::kEd25519PublicKeyBytes>(resolved.platform_public_key, "platform public key");
    if (!key) return std::unexpected(key.error());
    options.attestation.simulated_platform_key = *key;
  }
  if (resolved.allow_binding_v1) options.attestation.min_binding = protocol::Binding::v1;
  if (!resolved.measurement.empty()) {
    auto measurement = from_hex(resolved.measurement, "measurement");
    if (!measurement) return std::unexpected(measurement.error());
    options.attestation.expected_measurement = std::move(*measurement);
  }
  auto hardware = load_hardware_trust(resolved.attestation_policy, resolved.attestation_trust_root);
  if (!hardware) return std::unexpected(hardware.error());
  options.attestation.allowed_providers = hardware->policy.providers;
  options.hardware_policy = std::move(hardware->policy);
  options.trust_anchors = std::move(hardware->anchors);
  return options;
}

}  // namespace rvenc::client
