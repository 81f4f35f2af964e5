// "did you mean …?" for a mistyped subcommand or flag (see command.hpp).
#include <algorithm>
#include <optional>
#include <string_view>

#include "command.hpp"

namespace rvenc::cli {
namespace {

// Levenshtein distance between `a` and `b`.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The candidate closest to `word` when it is close enough to be a typo of it.
std::optional<std::string> closest(std::string_view word, const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  std::size_t best_distance = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const auto& candidate : candidates) {
    const std::size_t d = edit_distance(word, candidate);
    if (d < best_distance) {
      best_distance = d;
      best = candidate;
    }
  }
  return best;
}

std::string command_path(const CLI::App* app) {
  std::string path;
  for (; app != nullptr; app = app->get_parent()) path = app->get_name() + (path.empty() ? "" : " " + path);
  return path;
}

// "--gatway-port" unknown to `app`: the hint, or "" when no flag of `app` is close.
std::string flag_hint(const CLI::App& app, const std::string& name) {
  std::vector<std::string> names;
  for (const CLI::Option* option : app.get_options())
    for (const auto& long_name : option->get_lnames()) names.push_back("--" + long_name);
  const auto best = closest(name, names);
  if (!best) return {};
  return "unknown flag " + name + " for " + command_path(&app) + "; did you mean " + *best + "?";
}

// "chatt" where `app` wants a subcommand: the hint, or "" when none is close.
std::string subcommand_hint(CLI::App& app, const std::string& word) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) names.push_back(sub->get_name());
  const auto best = closest(word, names);
  if (!best) return {};
  return "unknown command " + command_path(&app) + " " + word + "; did you mean " + command_path(&app) + " " + *best +
         "?";
}

CLI::App* find_subcommand(CLI::App& app, const std::string& name) {
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
    if (sub->check_name(name)) return sub;
  return nullptr;
}

}  // namespace

std::string parse_error_hint(CLI::App& app, int argc, char** argv) {
  CLI::App* current = &app;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;
    if (arg.starts_with("--")) {
      const std::string name = arg.substr(0, arg.find('='));
      const CLI::Option* option = nullptr;
      for (CLI::App* scope = current; scope != nullptr && option == nullptr; scope = scope->get_parent())
        option = scope->get_option_no_throw(name);
      if (option == nullptr) return flag_hint(*current, name);
      if (arg.find('=') == std::string::npos && option->get_items_expected_min() > 0) ++i;  // its value
      continue;
    }
    if (arg.starts_with("-")) continue;
    if (CLI::App* sub = find_subcommand(*current, arg)) {
      current = sub;
      continue;
    }
    if (current->get_require_subcommand_min() > 0 && current->get_subcommands().empty())
      return subcommand_hint(*current, arg);
  }
  return {};
}

}  // namespace rvenc::cli
