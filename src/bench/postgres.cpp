#include "rvenc/bench/postgres.hpp"

#include <arpa/inet.h>
#include <pwd.h>
#include <unistd.h>

#include <fstream>

namespace rvenc::bench {
namespace {

namespace fs = std::filesystem;

constexpr const char* kServerUser = "nobody";

// The newest /usr/lib/postgresql/N/bin holding postgres, or "" (then PATH).
std::string find_bin_dir() {
  std::string best;
  int best_version = -1;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos || name.size() > 4) continue;
    const int version = std::stoi(name);
    if (version > best_version && fs::exists(entry.path() / "bin" / "postgres")) {
      best_version = version;
      best = (entry.path() / "bin").string();
    }
  }
  return best;
}

Status chown_tree(const fs::path& root, uid_t uid, gid_t gid) {
  if (::chown(root.c_str(), uid, gid) != 0) return fail(Errc::internal_error, "cannot hand " + root.string() + " to nobody");
  std::error_code ec;
  for (const auto& entry : fs::recursive_directory_iterator(root, ec))
    if (::lchown(entry.path().c_str(), uid, gid) != 0)
      return fail(Errc::internal_error, "cannot hand " + entry.path().string() + " to nobody");
  return {};
}

// Unix-socket clients (the socket is in the test's directory), and TCP clients on the server's own
// subnets: loopback, or the multi-host test's network. Nothing else may connect.
Status write_hba(const fs::path& file) {
  std::ofstream out(file, std::ios::trunc);
  out << "local all all trust\n"
         "host all all samenet trust\n";
  out.close();
  if (!out) return fail(Errc::internal_error, "cannot write " + file.string());
  return {};
}

}  // namespace

std::vector<std::string> LocalPostgresCommands::createdb(const std::string& name) const {
  std::vector<std::string> argv = user_prefix;
  for (const auto& arg : {bin_dir.empty() ? std::string("createdb") : bin_dir + "/createdb", std::string("-h"), address, std::string("-p"), std::to_string(port), std::string("-U"),
                          std::string(kLocalPostgresUser), name})
    argv.push_back(arg);
  return argv;
}

std::string LocalPostgresCommands::url(const std::string& name) const {
  return "postgresql://" + std::string(kLocalPostgresUser) + "@" + address + ":" + std::to_string(port) + "/" + name;
}

Result<LocalPostgresCommands> prepare_local_postgres(const fs::path& dir, std::uint16_t port,
                                                     const std::string& address) {
  in_addr parsed{};
  if (::inet_pton(AF_INET, address.c_str(), &parsed) != 1)
    return fail(Errc::invalid_request, "a local PostgreSQL listens on an IPv4 address, not \"" + address + "\"");
  LocalPostgresCommands c;
  c.bin_dir = find_bin_dir();
  c.address = address;
  c.port = port;
  const fs::path hba = dir / "pg_hba.conf";
  if (auto ok = write_hba(hba); !ok) return std::unexpected(ok.error());
  if (::geteuid() == 0) {
    const passwd* user = ::getpwnam(kServerUser);
    if (!user) return fail(Errc::internal_error, "postgres cannot run as root and there is no user nobody");
    if (auto ok = chown_tree(dir, user->pw_uid, user->pw_gid); !ok) return std::unexpected(ok.error());
    // Callers may exec without a PATH search (bench::ChildProcess): the full path when it is there.
    const std::string setpriv = fs::exists("/usr/bin/setpriv") ? "/usr/bin/setpriv" : "setpriv";
    c.user_prefix = {setpriv, "--reuid=" + std::to_string(user->pw_uid), "--regid=" + std::to_string(user->pw_gid),
                     "--clear-groups", "--"};
  }
  const auto bin = [&](const char* name) { return c.bin_dir.empty() ? std::string(name) : c.bin_dir + "/" + name; };
  const std::string data = (dir / "data").string();
  c.initdb = c.user_prefix;
  for (const auto& arg : {bin("initdb"), std::string("-D"), data, std::string("-U"), std::string(kLocalPostgresUser),
                          std::string("--auth=trust"), std::string("-E"), std::string("UTF8"), std::string("--no-sync"),
                          std::string("--no-instructions")})
    c.initdb.push_back(arg);
  c.postgres = c.user_prefix;
  for (const auto& arg : {bin("postgres"), std::string("-D"), data, std::string("-p"), std::to_string(port),
                          std::string("-k"), dir.string(), std::string("-c"), "listen_addresses=" + address,
                          std::string("-c"), "hba_file=" + hba.string(),
                          std::string("-c"), std::string("fsync=off"), std::string("-c"),
                          std::string("full_page_writes=off"),
                          std::string("-c"), std::string("max_connections=200")})
    c.postgres.push_back(arg);
  return c;
}

}  // namespace rvenc::bench
