// API keys as the gateway sees them: the store module's (rvenc/store/api_key.hpp), under the
// gateway's names, so the gateway's code and tests read as before the store module existed.
//
// Design: using-declarations only; the definitions live in rvenc_store.
#pragma once

#include "rvenc/store/api_key.hpp"

namespace rvenc::gateway {
using store::env_from_name;
using store::env_name;
using store::generate_api_key;
using store::hash_api_key;
using store::is_well_formed_api_key;
using store::key_env_of;
using store::KeyEnv;
using store::KeyHash;
using store::kApiKeyRandomChars;
using store::kLiveKeyPrefix;
using store::kMaxApiKeyBytes;
using store::kTestKeyPrefix;
}  // namespace rvenc::gateway
