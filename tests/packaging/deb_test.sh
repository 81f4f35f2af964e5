#!/usr/bin/env bash
# Builds the .deb with CPack from the build directory and checks it without installing it:
# control fields and maintainer scripts (dpkg-deb --info), the files (dpkg-deb --contents), the
# units' hardening, and `systemd-analyze verify` on the units when systemd-analyze exists.
#   deb_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
work=$(mktemp -d /tmp/rvenc-deb-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Its own package directory: the test never touches build/_CPack_Packages of an operator's run.
(cd "$build" && cpack -G DEB -B "$work/out" >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log" >&2; fail "cpack -G DEB failed"; }
deb=$(ls "$work"/out/rvenc_*.deb 2>/dev/null | head -n1)
[ -f "$deb" ] || { cat "$work/cpack.log" >&2; fail "no rvenc_*.deb in $work/out"; }
echo "built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"

info=$(dpkg-deb --info "$deb")
for field in "Package: rvenc" "Architecture: $(dpkg --print-architecture)" "Section: net" "Depends: "; do
  grep -q "^ $field" <<<"$info" || fail "control has no '$field':"$'\n'"$info"
done
grep -q "^ Depends: .*adduser" <<<"$info" || fail "Depends lacks adduser"
grep -q "^ Depends: .*libhiredis" <<<"$info" || fail "Depends lacks libhiredis (shlibdeps)"
for script in postinst prerm postrm conffiles; do
  grep -qE "^ +[0-9]+ bytes, +[0-9]+ lines +\*? *$script" <<<"$info" || fail "no $script in the control archive"
done

contents=$(dpkg-deb --contents "$deb")
expect_file() {  # path mode-prefix
  grep -qE "^$2 .* \./${1#/}$" <<<"$contents" || fail "missing $1 ($2):"$'\n'"$contents"
}
expect_file /usr/bin/rvenc '-rwxr-xr-x'
for unit in gateway enclave proxy; do
  expect_file "/usr/lib/systemd/system/rvenc-$unit.service" '-rw-r--r--'
  expect_file "/etc/rvenc/$unit.env" '-rw-r-----'
done
expect_file /usr/share/doc/rvenc/packaging.md '-rw-r--r--'
# The SDK (headers, static libraries, CMake config) is not in the server package.
! grep -qE '\.(a|hpp|cmake)$' <<<"$contents" || fail "SDK files in the package"

dpkg-deb -x "$deb" "$work/root"
dpkg-deb -e "$deb" "$work/control"
sh -n "$work/control/postinst" && grep -q "adduser --system" "$work/control/postinst" || fail "postinst does not make the rvenc user"
[ "$(cat "$work/control/conffiles")" = "$(printf '/etc/rvenc/gateway.env\n/etc/rvenc/enclave.env\n/etc/rvenc/proxy.env')" ] \
  || fail "conffiles: $(cat "$work/control/conffiles")"
"$work/root/usr/bin/rvenc" --version | grep -q '^rvenc ' || fail "the packaged binary does not run"
for unit in gateway enclave proxy; do
  file="$work/root/usr/lib/systemd/system/rvenc-$unit.service"
  for line in "User=rvenc" "NoNewPrivileges=yes" "ProtectSystem=strict" "PrivateTmp=yes" "StateDirectory=rvenc" \
              "EnvironmentFile=/etc/rvenc/$unit.env" "ExecStart=/usr/bin/rvenc $unit" "CapabilityBoundingSet="; do
    grep -qx "$line" "$file" || fail "rvenc-$unit.service lacks $line"
  done
  # Every RVENC_* name in the env file is a flag of the subcommand (a typo would be ignored silently).
  help=$("$work/root/usr/bin/rvenc" "$unit" --help)
  for var in $(grep -oE '^#?RVENC_[A-Z_]+' "$work/root/etc/rvenc/$unit.env" | tr -d '#'); do
    flag="--$(tr 'A-Z_' 'a-z-' <<<"${var#RVENC_}")"
    [ "$var" = RVENC_GATEWAY_URL ] && flag=--gateway
    grep -q -- "$flag" <<<"$help" || fail "$unit.env sets $var but \`rvenc $unit\` has no $flag"
  done
done

if command -v systemd-analyze >/dev/null 2>&1; then
  # Verified where the binary really is (ExecStart must exist); nothing is installed.
  mkdir -p "$work/units"
  for unit in gateway enclave proxy; do
    sed "s|/usr/bin/rvenc|$work/root/usr/bin/rvenc|; s|^EnvironmentFile=.*|EnvironmentFile=-$work/root/etc/rvenc/$unit.env|" \
      "$work/root/usr/lib/systemd/system/rvenc-$unit.service" > "$work/units/rvenc-$unit.service"
  done
  out=$(cd "$work/units" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no ./rvenc-*.service 2>&1) \
    || fail "systemd-analyze verify:"$'\n'"$out"
  # Warnings about the unit files themselves (unknown or misspelled settings) fail too.
  if grep -E "rvenc-[a-z]+\.service:[0-9]+:" <<<"$out"; then fail "systemd-analyze verify warns:"$'\n'"$out"; fi
  echo "systemd-analyze verify: ok"
  # The exposure systemd computes from the sandboxing settings (0 best, 10 worst): "OK" is below 3.
  for unit in gateway enclave proxy; do
    level=$(cd "$work/units" && systemd-analyze security --offline=yes "./rvenc-$unit.service" 2>/dev/null \
            | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
    [ -n "$level" ] || { echo "systemd-analyze security --offline unsupported: exposure not checked"; break; }
    awk -v l="$level" 'BEGIN { exit !(l < 3.0) }' || fail "rvenc-$unit.service exposure $level (want < 3.0)"
    echo "rvenc-$unit.service exposure $level"
  done
else
  echo "systemd-analyze not found: units not verified"
fi
echo "ok"
