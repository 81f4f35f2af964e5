// The SQLite backend of the key and usage store: one database file, shared by the processes of
// one host (`rvenc up`, gateways on one machine, `rvenc keys`).
//
// Design: one backend is one SQLite connection (WAL mode, busy timeout, schema versioned with
// PRAGMA user_version), used by one thread at a time; the gateway opens one for lookups on its
// event loop and one for its background usage writer. Statements are prepared with bound
// parameters only.
#pragma once

#include <memory>
#include <string>

#include "rvenc/store/store.hpp"

namespace rvenc::store {

// Opens (creating if needed, unless existing_only) the database and migrates it to kSchemaVersion.
[[nodiscard]] Result<std::unique_ptr<Backend>> open_sqlite(const std::string& path, StoreOptions::OpenMode mode);

}  // namespace rvenc::store
