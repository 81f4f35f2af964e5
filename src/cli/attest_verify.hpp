// `rvenc attest verify`: the offline check of hardware evidence (issue 21 item 6), a subcommand of
// `rvenc attest` (whose own flags keep checking a live gateway).
//
// Design: one call of attestation::verify() on files, nothing from the network and no clock but
// `--at` (default now), so scripts get the same answer the SDK would. Exit 0 and what was
// verified on stdout; exit 1 with "<check>: why" on stderr; exit 2 for unusable flags or files
// that are not evidence (an unreadable policy or trust root).
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace rvenc::cli {

// Adds `verify` under `attest`; sets `run` when it is the subcommand given. Returns it so the
// parent can tell it was parsed.
CLI::App* add_attest_verify(CLI::App& attest, std::function<int()>& run);

}  // namespace rvenc::cli
