#!/usr/bin/env bash
# Build DiscBridge.app and a drag-to-Applications .dmg on macOS; sign and notarise when
# credentials are given, skip those steps with a clear message otherwise.
#   packaging/macos/build_dmg.sh
# Optional environment:
#   CODESIGN_IDENTITY   "Developer ID Application: Name (TEAMID)"  -> codesign --options runtime
#   NOTARY_PROFILE      a keychain profile made with `xcrun notarytool store-credentials`
#                       -> notarytool submit --wait, then stapler staple
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(uname -s)" = Darwin ] || { echo "build_dmg.sh runs on macOS only"; exit 2; }

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[build]"
.venv/bin/python packaging/make_icons.py
export PYINSTALLER_CONFIG_DIR="$PWD/build/pyinstaller-cache"
.venv/bin/python -m PyInstaller --noconfirm packaging/discbridge.spec

APP="dist/DiscBridge.app"
VERSION=$(.venv/bin/python -c "import app; print(app.__version__)")
echo "-- self-test of the frozen app"
QT_QPA_PLATFORM=offscreen "$APP/Contents/MacOS/DiscBridge" --self-test

ENTITLEMENTS=packaging/macos/entitlements.plist
if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  echo "-- codesign with $CODESIGN_IDENTITY"
  codesign --force --deep --timestamp --options runtime --entitlements "$ENTITLEMENTS" \
    --sign "$CODESIGN_IDENTITY" "$APP"
  codesign --verify --deep --strict --verbose=2 "$APP"
else
  echo "-- CODESIGN_IDENTITY not set: the app is NOT signed (Gatekeeper will ask users to"
  echo "   right-click > Open the first time). Set it to sign."
fi

DMG="build/DiscBridge-$VERSION.dmg"
STAGE=build/dmg-stage
rm -rf "$STAGE" "$DMG"; mkdir -p "$STAGE"
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
hdiutil create -volname "DiscBridge $VERSION" -srcfolder "$STAGE" -ov -format UDZO "$DMG"
if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  codesign --timestamp --sign "$CODESIGN_IDENTITY" "$DMG"
fi

if [ -n "${CODESIGN_IDENTITY:-}" ] && [ -n "${NOTARY_PROFILE:-}" ]; then
  echo "-- notarising (this waits for Apple)"
  xcrun notarytool submit "$DMG" --keychain-profile "$NOTARY_PROFILE" --wait
  xcrun stapler staple "$DMG"
  spctl --assess --type open --context context:primary-signature --verbose "$DMG"
else
  echo "-- NOTARY_PROFILE (and CODESIGN_IDENTITY) not set: notarisation skipped."
fi
echo "dmg: $DMG"
