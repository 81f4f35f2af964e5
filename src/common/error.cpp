#include "rvenc/common/error.hpp"

#include <array>
#include <utility>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

namespace rvenc {

namespace {

struct CodeInfo {
  Errc code;
  std::string_view name;
  int status;
};

// One row per code: wire name and HTTP status (PROTOCOL.md section 5). The client-side stream
// errors have no wire status of their own; a local proxy reports them as a bad upstream (502).
constexpr std::array kCodes{
    CodeInfo{Errc::invalid_request, "invalid_request", 400},
    CodeInfo{Errc::unsupported_version, "unsupported_version", 400},
    CodeInfo{Errc::decryption_failed, "decryption_failed", 400},
    CodeInfo{Errc::replayed_request, "replayed_request", 400},
    CodeInfo{Errc::invalid_inference, "invalid_inference", 400},
    CodeInfo{Errc::invalid_api_key, "invalid_api_key", 401},
    CodeInfo{Errc::key_revoked, "key_revoked", 403},
    CodeInfo{Errc::test_key_not_allowed, "test_key_not_allowed", 403},
    CodeInfo{Errc::unknown_key_id, "unknown_key_id", 404},
    CodeInfo{Errc::model_not_found, "model_not_found", 404},
    CodeInfo{Errc::not_found, "not_found", 404},
    CodeInfo{Errc::method_not_allowed, "method_not_allowed", 405},
    CodeInfo{Errc::request_too_large, "request_too_large", 413},
    CodeInfo{Errc::rate_limit_exceeded, "rate_limit_exceeded", 429},
    CodeInfo{Errc::replay_quota_exceeded, "replay_quota_exceeded", 429},
    CodeInfo{Errc::upstream_error, "upstream_error", 502},
    CodeInfo{Errc::enclave_busy, "enclave_busy", 503},
    CodeInfo{Errc::enclave_unavailable, "enclave_unavailable", 503},
    CodeInfo{Errc::overloaded, "overloaded", 503},
    CodeInfo{Errc::upstream_timeout, "upstream_timeout", 504},
    CodeInfo{Errc::internal_error, "internal_error", 500},
    CodeInfo{Errc::tampered_stream, "tampered_stream", 502},
    CodeInfo{Errc::truncated_stream, "truncated_stream", 502},
    CodeInfo{Errc::event_too_large, "event_too_large", 502},
    CodeInfo{Errc::timeout, "timeout", 504},
    CodeInfo{Errc::attestation_failed, "attestation_failed", 502},
    CodeInfo{Errc::transport_error, "transport_error", 502},
    CodeInfo{Errc::tls_error, "tls_error", 502},
};

const CodeInfo& info(Errc code) noexcept {
  for (const auto& row : kCodes) {
    if (row.code == code) return row;
  }
  static constexpr CodeInfo kInternal{Errc::internal_error, "internal_error", 500};
  return kInternal;
}

}  // namespace

std::string Error::to_string() const {
  std::string out(code_name(code));
  if (!message.empty()) {
    out += ": ";
    out += message;
  }
  return out;
}

std::string_view code_name(Errc code) noexcept { return info(code).name; }

Errc code_from_name(std::string_view name) noexcept {
  for (const auto& row : kCodes) {
    if (row.name == name) return row.code;
  }
  return Errc::internal_error;
}

int http_status(Errc code) noexcept { return info(code).status; }

std::string_view error_type(Errc code) noexcept { return error_type_for_status(http_status(code)); }

std::string_view error_type_for_status(int status) noexcept {
  switch (status) {
    case 400:
    case 405:
    case 413:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 429:
      return "rate_limit_error";
    case 500:
      return "server_error";
    default:
      return "api_error";
  }
}

std::string openai_error_body(const Error& error, std::string_view source) {
  boost::json::object inner;
  inner["message"] = error.message.empty() ? std::string(code_name(error.code)) : error.message;
  inner["type"] = error_type(error.code);
  inner["param"] = nullptr;  // the full OpenAI shape: clients read error.param
  inner["code"] = code_name(error.code);
  if (!source.empty()) inner["source"] = source;
  boost::json::object outer;
  outer["error"] = std::move(inner);
  return boost::json::serialize(outer);
}

}  // namespace rvenc
