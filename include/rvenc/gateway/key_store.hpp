// The gateway's key and usage store: the store module's (rvenc/store/store.hpp: one interface,
// SQLite and PostgreSQL behind it), under the gateway's names.
//
// Design: using-declarations only, so the gateway's code and tests read as before the store
// module existed; the definitions live in rvenc_store.
#pragma once

#include "rvenc/gateway/api_key.hpp"
#include "rvenc/store/store.hpp"

namespace rvenc::gateway {
using store::ApiKeyRecord;
using store::CreatedKey;
using store::KeyLimits;
using store::KeyStore;
using store::kSchemaVersion;
using store::UsageRow;
using store::usage_row_from_json;
using store::UsageTotals;
using store::to_json;
}  // namespace rvenc::gateway
