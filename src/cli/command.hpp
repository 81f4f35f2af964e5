// The rvenc command line: each subcommand lives in its own file and registers itself here, so
// the entry point only parses flags and calls modules.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace rvenc::cli {

// Exit codes that mean something to scripts.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;       // the operation failed (server error, request refused)
inline constexpr int kExitUsage = 2;         // bad flags or arguments
inline constexpr int kExitUnavailable = 3;   // could not reach a server / bind a port
inline constexpr int kExitUntrusted = 4;     // attestation did not verify
inline constexpr int kExitInterrupted = 130; // stopped by Ctrl-C (the shell's convention for SIGINT)

struct Command {
  std::string name;
  // Adds the subcommand to `app`; sets `run` to what executes it once flags are parsed.
  std::function<void(CLI::App& app, std::function<int()>& run)> setup;
};

// Registers a command at static-initialisation time: `static Registrar r{{"keys", setup}};`
struct Registrar {
  explicit Registrar(Command command);
};

// CLI11 option whose environment variable is RVENC_<FLAG> (--api-key -> RVENC_API_KEY), per shared/CLI.md.
template <class T>
CLI::Option* option(CLI::App& app, const std::string& flag, T& value, const std::string& help) {
  std::string env = "RVENC_";
  std::string name = flag.substr(flag.rfind(',') == std::string::npos ? 0 : flag.rfind(',') + 1);
  for (char c : name.substr(name.find_first_not_of('-'))) env += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return app.add_option(flag, value, help)->envname(env);
}

// Same for a boolean flag.
CLI::Option* flag(CLI::App& app, const std::string& flag, bool& value, const std::string& help);

// A numeric flag's range check whose error reads "--max-tokens: must be ≥ 1" (CLI11's own Range
// prints "Value 0 not in range 0.000000 to 1797…" with 300 digits). `max` 0 means no upper bound.
CLI::Validator at_least(long long min, long long max = 0);

// For a command line CLI11 refused: "unknown command rvenc chatt; did you mean rvenc chat?" or
// "unknown flag --gatway-port for rvenc up; did you mean --gateway-port?" (the closest name by edit
// distance, when it is close enough to be a typo); "" when there is nothing to suggest.
std::string parse_error_hint(CLI::App& app, int argc, char** argv);

}  // namespace rvenc::cli
