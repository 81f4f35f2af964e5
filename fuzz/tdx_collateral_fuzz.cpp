// Intel's TDX collateral parsers (TCB Info v3, QE Identity v2 JSON) and TCB level matching on
// arbitrary bytes: never crashes; an accepted document's signed range lies inside the input and
// is itself a JSON object (the bytes Intel signs, found without re-serialising).
#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "fuzz_check.hpp"
#include "rvenc/attestation/tdx.hpp"

namespace {

namespace tdx = rvenc::attestation::tdx;

void check_range(const tdx::SignedJson& s, std::span<const std::uint8_t> bytes) {
  RVENC_FUZZ_CHECK(s.body_offset + s.body_size <= bytes.size() && s.body_size >= 2);
  const std::string_view body(reinterpret_cast<const char*>(bytes.data()) + s.body_offset, s.body_size);
  boost::system::error_code ec;
  const auto value = boost::json::parse(body, ec);
  RVENC_FUZZ_CHECK(!ec && value.is_object());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  if (const auto info = tdx::parse_tcb_info(bytes)) {
    check_range(info->signed_json, bytes);
    const tdx::PckExtensions pck{{4, 4, 2, 2, 3, 1, 0, 5}, 13, {}, {}, {}};
    tdx::TdReport body;
    body.tee_tcb_svn = {5, 1, 3};
    const auto status = tdx::match_tcb_level(*info, pck, body);
    RVENC_FUZZ_CHECK(status.has_value() || status.error().check == rvenc::attestation::Check::tcb_status);
  }
  if (const auto identity = tdx::parse_qe_identity(bytes)) check_range(identity->signed_json, bytes);
  return 0;
}
