// rvenc chat: end-to-end encrypted chat through a gateway. One-shot with a PROMPT (or a prompt on
// stdin), interactive on a terminal; answers stream as they arrive, reasoning dimmed on a
// terminal, Ctrl-C cancels the current answer (a second Ctrl-C, or Ctrl-D at the prompt, exits).
// What the model and the gateway say reaches a terminal without its control sequences (a reply
// could otherwise set the window title or write the clipboard with OSC 52) unless --raw.
#include <editline/readline.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <memory>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "client_flags.hpp"
#include "rvenc/client/client.hpp"
#include "rvenc/client/terminal.hpp"

namespace rvenc::cli {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;

constexpr std::string_view kDim = "\x1b[2m";
constexpr std::string_view kReset = "\x1b[0m";

struct ChatFlags {
  client::ClientSettings settings;
  std::string model;
  std::string system;
  std::int64_t max_tokens = 0;
  bool json = false;
  bool raw = false;
  long long total_timeout_ms = 0;  // 0: none
  std::vector<std::string> prompt;
};

// Writes streamed chunks: content as plain text, reasoning dimmed (terminal only), or each raw
// decrypted chunk as one JSON line with --json; on a terminal without --raw, control sequences
// are removed from all of it. Collects the answer's content (as sent).
class Printer {
 public:
  Printer(bool raw_json, bool tty, bool keep_controls)
      : raw_json_(raw_json), tty_(tty), safe_(tty && !keep_controls) {}

  void begin() {
    for (auto* filter : {&content_filter_, &reasoning_filter_}) filter->reset();
    answer_.clear();
    cut_ = false;
    in_reasoning_ = false;
    printed_ = false;
  }

  void chunk(const client::Chunk& chunk) {
    const auto* choices = chunk.object.if_contains("choices");
    const json::object* delta = nullptr;
    if (choices && choices->is_array() && !choices->as_array().empty() && choices->as_array()[0].is_object())
      if (const auto* d = choices->as_array()[0].as_object().if_contains("delta"); d && d->is_object()) delta = &d->as_object();
    const auto text_of = [delta](std::string_view key) -> std::string_view {
      if (delta == nullptr) return {};
      const auto* v = delta->if_contains(key);
      return v && v->is_string() ? std::string_view(v->as_string()) : std::string_view{};
    };
    const std::string_view content = text_of("content");
    answer_ += content;
    if (choices && choices->is_array() && !choices->as_array().empty() && choices->as_array()[0].is_object())
      if (const auto* reason = choices->as_array()[0].as_object().if_contains("finish_reason");
          reason && reason->is_string() && reason->as_string() == "length")
        cut_ = true;
    if (raw_json_) {
      std::cout << shown(content_filter_, chunk.json()) << '\n' << std::flush;
      return;
    }
    // Reasoning is for a person watching; piped output carries the answer only.
    if (const std::string_view reasoning = text_of("reasoning_content"); tty_ && !reasoning.empty()) {
      if (!in_reasoning_) std::cout << kDim;
      in_reasoning_ = true;
      std::cout << shown(reasoning_filter_, reasoning);
    }
    if (!content.empty()) {
      if (in_reasoning_) std::cout << kReset << "\n\n";
      in_reasoning_ = false;
      std::cout << shown(content_filter_, content);
    }
    printed_ = printed_ || !content.empty() || in_reasoning_;
    std::cout << std::flush;
  }

  // Ends the answer's line (when there is one) and any dimmed text.
  void end() {
    if (in_reasoning_) std::cout << kReset;
    in_reasoning_ = false;
    if (printed_) std::cout << '\n';
    std::cout << std::flush;
  }

  [[nodiscard]] const std::string& answer() const { return answer_; }
  // The answer ended at the token limit (finish_reason "length").
  [[nodiscard]] bool cut() const { return cut_; }

 private:
  // `text` as it may be written: filtered on a terminal (a sequence may span chunks, so one
  // filter per kind of text), as is otherwise.
  [[nodiscard]] std::string shown(client::TerminalTextFilter& filter, std::string_view text) const {
    return safe_ ? filter.filter(text) : std::string(text);
  }

  bool raw_json_;
  bool tty_;
  bool safe_;
  client::TerminalTextFilter content_filter_;
  client::TerminalTextFilter reasoning_filter_;
  bool in_reasoning_ = false;
  bool printed_ = false;
  bool cut_ = false;
  std::string answer_;
};

struct TurnResult {
  Status status;
  bool interrupted = false;
};

// Streams one answer on `io`. The first SIGINT cancels the request, a second one exits.
TurnResult stream_answer(asio::io_context& io, const client::Client& client, json::object request, Printer& printer) {
  asio::signal_set signals(io, SIGINT);
  asio::cancellation_signal cancel;
  TurnResult turn;
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    turn.interrupted = true;
    cancel.emit(asio::cancellation_type::terminal);
    signals.async_wait([](const boost::system::error_code& again, int) {
      if (!again) std::_Exit(kExitInterrupted);
    });
  });

  printer.begin();
  const client::AsyncChunkHandler on_chunk = [&printer](const client::Chunk& chunk) -> http::awaitable<Status> {
    printer.chunk(chunk);
    co_return Status{};
  };
  bool finished = false;
  asio::co_spawn(io, client.chat.completions.async_create(std::move(request), on_chunk),
                 asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr e, Status status) {
                   turn.status = e ? Status(fail(Errc::internal_error, "unexpected failure")) : std::move(status);
                   finished = true;
                   signals.cancel();
                 }));
  // Until this answer is complete (pooled connections may keep other work on `io`).
  io.restart();
  while (!finished && io.run_one()) {
  }
  io.poll();  // the cancelled signal wait completes while `signals` and `turn` still exist
  printer.end();
  return turn;
}

// Says on stderr (never mixed into a piped answer) that the answer stopped at the token limit.
void report_cut(const Printer& printer, std::int64_t max_tokens) {
  if (!printer.cut()) return;
  if (max_tokens > 0)
    std::cerr << "[the answer was cut at --max-tokens " << max_tokens << " (reasoning counts too); raise it for more]\n";
  else
    std::cerr << "[the answer was cut at the model's token limit; pass --max-tokens N for more]\n";
}

json::object make_request(const ChatFlags& flags, const std::string& model, const json::array& messages) {
  json::object request{{"model", model}, {"messages", messages}, {"stream", true}};
  if (flags.max_tokens > 0) request["max_tokens"] = flags.max_tokens;
  return request;
}

Result<std::string> first_model(const client::Client& client) {
  auto models = client.models();
  if (!models) return std::unexpected(models.error());
  if (const auto* data = models->if_contains("data"); data && data->is_array() && !data->as_array().empty()) {
    if (const auto* first = data->as_array()[0].as_object().if_contains("id"); first && first->is_string())
      return std::string(first->as_string());
  }
  return fail(Errc::not_found, "the gateway lists no model; pass -m MODEL");
}

// One line typed at the prompt, with line editing and this session's history (libedit). The
// history stays in memory: prompts are what this tool keeps end-to-end encrypted, so none is
// written to disk. nullopt at Ctrl-D.
std::optional<std::string> read_prompt_line() {
  char* raw = readline("> ");
  if (raw == nullptr) return std::nullopt;
  std::string line(raw);
  std::free(raw);
  if (line.find_first_not_of(" \t\r") != std::string::npos) add_history(line.c_str());
  return line;
}

enum class SessionCommand { none, exit, handled };

// "/exit" (or "/quit"), "/reset", "/model NAME": done here and never sent to the model. Any other
// line starting with "/" and a letter is refused with the list, so a mistyped command is not sent
// either; "//text" sends "/text".
SessionCommand session_command(std::string line, const ChatFlags& flags, json::array& messages, std::string& model) {
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
  if (line.size() < 2 || line[0] != '/' || !std::isalpha(static_cast<unsigned char>(line[1]))) return SessionCommand::none;
  const auto space = line.find(' ');
  const std::string name = line.substr(0, space);
  const std::string arg = space == std::string::npos ? "" : line.substr(line.find_first_not_of(' ', space));
  if (name == "/exit" || name == "/quit") return SessionCommand::exit;
  if (name == "/reset") {
    messages.clear();
    if (!flags.system.empty()) messages.push_back(json::object{{"role", "system"}, {"content", flags.system}});
    std::cerr << "[conversation cleared]\n";
  } else if (name == "/model" && !arg.empty()) {
    model = arg;
    std::cerr << "[model " << terminal_safe(STDERR_FILENO, model) << "]\n";
  } else if (name == "/model") {
    std::cerr << "[model " << terminal_safe(STDERR_FILENO, model) << "; /model NAME switches]\n";
  } else {
    std::cerr << "[unknown command " << terminal_safe(STDERR_FILENO, name)
              << ": /exit, /reset, /model NAME; start a message with // to send a leading /]\n";
  }
  return SessionCommand::handled;
}

int run_chat(const ChatFlags& flags) {
  const auto report = [&flags](const Error& error) { return report_error("chat", error, flags.raw); };
  auto options = resolve_client_settings(flags.settings, "chat");
  if (!options) return report(options.error());
  if (flags.total_timeout_ms > 0) options->total_timeout = std::chrono::milliseconds(flags.total_timeout_ms);
  if (options->api_key.empty()) {
    std::cerr << "rvenc chat: an API key is needed: --api-key, RVENC_API_KEY, or run next to `rvenc up`\n";
    return kExitUsage;
  }
  // The io_context outlives the client: the client's pooled connections live on it.
  asio::io_context io;
  auto client = client::create_client(*options);
  if (!client) return report(client.error());
  std::string model = flags.model;
  if (model.empty()) {
    auto listed = first_model(*client);
    if (!listed) return report(listed.error());
    model = std::move(*listed);
  }

  json::array messages;
  if (!flags.system.empty()) messages.push_back(json::object{{"role", "system"}, {"content", flags.system}});
  Printer printer(flags.json, isatty(STDOUT_FILENO) == 1, flags.raw);

  std::string prompt;
  for (const auto& word : flags.prompt) prompt += (prompt.empty() ? "" : " ") + word;
  const bool interactive = prompt.empty() && isatty(STDIN_FILENO) == 1;
  if (!interactive) {
    if (prompt.empty()) prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    if (prompt.find_first_not_of(" \t\r\n") == std::string::npos) {
      std::cerr << "rvenc chat: no prompt (give PROMPT or pipe it on stdin)\n";
      return kExitUsage;
    }
    messages.push_back(json::object{{"role", "user"}, {"content", prompt}});
    const TurnResult turn = stream_answer(io, *client, make_request(flags, model, messages), printer);
    report_cut(printer, flags.max_tokens);
    if (turn.interrupted) return kExitInterrupted;
    return turn.status ? kExitOk : report(turn.status.error());
  }

  // The model's name comes from the gateway's list.
  std::cerr << "rvenc chat: " << terminal_safe(STDERR_FILENO, model, flags.raw) << " via " << options->base_url
            << ", end-to-end encrypted. Ctrl-C cancels an answer, Ctrl-D or /exit exits; /reset starts over, "
               "/model NAME switches.\n";
  for (;;) {
    const auto line = read_prompt_line();
    if (!line) {
      std::cout << '\n';
      return kExitOk;
    }
    if (line->find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto command = session_command(*line, flags, messages, model);
    if (command == SessionCommand::exit) return kExitOk;
    if (command == SessionCommand::handled) continue;
    const std::string_view text = line->starts_with("//") ? std::string_view(*line).substr(1) : std::string_view(*line);
    messages.push_back(json::object{{"role", "user"}, {"content", text}});
    const TurnResult turn = stream_answer(io, *client, make_request(flags, model, messages), printer);
    report_cut(printer, flags.max_tokens);
    if (turn.status) {
      messages.push_back(json::object{{"role", "assistant"}, {"content", printer.answer()}});
      continue;
    }
    // A cancelled or failed exchange is left out of the conversation.
    messages.pop_back();
    if (turn.interrupted)
      std::cerr << "[cancelled]\n";
    else
      report(turn.status.error());
  }
}

void setup(CLI::App& app, std::function<int()>& run) {
  auto* cmd = app.add_subcommand("chat", "End-to-end encrypted chat through an rvenc gateway (one-shot or interactive)");
  auto flags = std::make_shared<ChatFlags>();
  add_client_flags(*cmd, flags->settings, true);
  option(*cmd, "-m,--model", flags->model, "Model (default: the first one the gateway lists)");
  option(*cmd, "--system", flags->system, "System prompt");
  option(*cmd, "--max-tokens", flags->max_tokens, "Most tokens to generate")->check(at_least(1));
  flag(*cmd, "--json", flags->json, "Print each decrypted chunk as one JSON line");
  flag(*cmd, "--raw", flags->raw,
       "Write model output and server messages to a terminal as received, control sequences included "
       "(default: removed)");
  option(*cmd, "--total-timeout-ms", flags->total_timeout_ms,
         "Longest time one request may take as a whole, attestation to the answer's end (default: none)")
      ->check(at_least(1));
  cmd->add_option("prompt", flags->prompt, "The prompt (default: stdin, or an interactive session on a terminal)");
  cmd->callback([flags, &run] { run = [flags] { return run_chat(*flags); }; });
}

const Registrar registrar{{"chat", setup}};

}  // namespace
}  // namespace rvenc::cli
