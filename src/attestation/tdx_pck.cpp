// The SGX extensions of a PCK certificate (tdx.hpp parse_pck_extensions), decoded with OpenSSL's
// generic ASN.1 reader: SEQUENCE { SEQUENCE { OID, value } ... } with the TCB a nested sequence.
// OIDs: Intel SGX PCK Certificate and CRL Profile, 1.2.840.113741.1.13.1.{2 TCB, 3 PCE-ID, 4 FMSPC}.
#include <openssl/asn1.h>
#include <openssl/objects.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>

#include "rvenc/attestation/tdx.hpp"

namespace rvenc::attestation::tdx {
namespace {

constexpr std::string_view kSgxOid = "1.2.840.113741.1.13.1";

struct SeqFree {
  void operator()(ASN1_SEQUENCE_ANY* s) const noexcept { sk_ASN1_TYPE_pop_free(s, ASN1_TYPE_free); }
};
using SeqPtr = std::unique_ptr<ASN1_SEQUENCE_ANY, SeqFree>;

SeqPtr parse_seq(const unsigned char* der, long size) {
  const unsigned char* p = der;
  SeqPtr seq(d2i_ASN1_SEQUENCE_ANY(nullptr, &p, size));
  if (seq && p != der + size) seq.reset();  // trailing bytes
  return seq;
}
SeqPtr parse_seq(const ASN1_TYPE* t) {
  if (t == nullptr || t->type != V_ASN1_SEQUENCE) return nullptr;
  return parse_seq(t->value.sequence->data, t->value.sequence->length);
}

// The dotted OID of a {OID, value} pair's first element ("" when it is not one).
std::string pair_oid(const ASN1_SEQUENCE_ANY* pair) {
  if (pair == nullptr || sk_ASN1_TYPE_num(pair) != 2) return {};
  const ASN1_TYPE* o = sk_ASN1_TYPE_value(pair, 0);
  if (o->type != V_ASN1_OBJECT) return {};
  char buf[80];
  const int n = OBJ_obj2txt(buf, sizeof buf, o->value.object, 1);
  return n > 0 && n < static_cast<int>(sizeof buf) ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

template <std::size_t N>
bool octets(const ASN1_TYPE* v, std::array<std::uint8_t, N>& out) {
  if (v->type != V_ASN1_OCTET_STRING || v->value.octet_string->length != static_cast<int>(N)) return false;
  std::copy_n(v->value.octet_string->data, N, out.begin());
  return true;
}

bool small_uint(const ASN1_TYPE* v, std::uint64_t max, std::uint64_t& out) {
  return v->type == V_ASN1_INTEGER && ASN1_INTEGER_get_uint64(&out, v->value.integer) == 1 && out <= max;
}

// The TCB sequence: 16 component SVNs (.2.1 .. .2.16), PCESVN (.2.17), CPUSVN (.2.18).
bool parse_tcb(const ASN1_TYPE* t, PckExtensions& out) {
  const SeqPtr tcb = parse_seq(t);
  if (!tcb) return false;
  unsigned seen = 0;
  const std::string prefix = std::string(kSgxOid) + ".2.";
  for (int i = 0; i < sk_ASN1_TYPE_num(tcb.get()); ++i) {
    const SeqPtr pair = parse_seq(sk_ASN1_TYPE_value(tcb.get(), i));
    const std::string oid = pair_oid(pair.get());
    if (!oid.starts_with(prefix)) continue;
    const ASN1_TYPE* v = sk_ASN1_TYPE_value(pair.get(), 1);
    const std::string_view index = std::string_view(oid).substr(prefix.size());
    std::uint64_t n = 0;
    if (index == "18") {
      if (!octets(v, out.cpu_svn)) return false;
      seen |= 1U << 18U;
    } else if (index == "17") {
      if (!small_uint(v, 0xFFFF, n)) return false;
      out.pce_svn = static_cast<std::uint16_t>(n);
      seen |= 1U << 17U;
    } else {
      const int k = index.size() <= 2 ? std::atoi(std::string(index).c_str()) : 0;
      if (k < 1 || k > 16 || !small_uint(v, 0xFF, n)) return false;
      out.cpu_svn_components[static_cast<std::size_t>(k - 1)] = static_cast<std::uint8_t>(n);
      seen |= 1U << static_cast<unsigned>(k);
    }
  }
  return seen == 0x7FFFEU;  // bits 1..18
}

}  // namespace

Outcome<PckExtensions> parse_pck_extensions(std::span<const std::uint8_t> der) {
  const auto bad = [](std::string_view what) {
    return fail(Check::malformed, "PCK certificate SGX extensions: " + std::string(what));
  };
  if (der.empty() || der.size() > 4096) return bad("absent or oversized");
  const SeqPtr top = parse_seq(der.data(), static_cast<long>(der.size()));
  if (!top) return bad("not a DER sequence");
  PckExtensions out;
  bool tcb = false, pce_id = false, fmspc = false;
  for (int i = 0; i < sk_ASN1_TYPE_num(top.get()); ++i) {
    const SeqPtr pair = parse_seq(sk_ASN1_TYPE_value(top.get(), i));
    const std::string oid = pair_oid(pair.get());
    if (oid.empty()) return bad("an entry is not an {OID, value} pair");
    const ASN1_TYPE* v = sk_ASN1_TYPE_value(pair.get(), 1);
    if (oid == std::string(kSgxOid) + ".2") {
      if (!(tcb = parse_tcb(v, out))) return bad("the TCB entry is incomplete or out of range");
    } else if (oid == std::string(kSgxOid) + ".3") {
      if (!(pce_id = octets(v, out.pce_id))) return bad("PCE-ID is not 2 bytes");
    } else if (oid == std::string(kSgxOid) + ".4") {
      if (!(fmspc = octets(v, out.fmspc))) return bad("FMSPC is not 6 bytes");
    }
  }
  if (!tcb || !pce_id || !fmspc) return bad("TCB, PCE-ID or FMSPC missing");
  return out;
}

}  // namespace rvenc::attestation::tdx
