# Build DiscBridge for Windows: venv, frozen app, self-test, per-user installer.
# Run from the repository root in PowerShell:  powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1
# Needs: Python >= 3.11 (python.org installer), Inno Setup 6 (iscc on PATH or in its default folder).
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..\..")

python -m venv .venv
.\.venv\Scripts\python -m pip install --upgrade pip
.\.venv\Scripts\python -m pip install -e ".[build]"
.\.venv\Scripts\python packaging\make_icons.py
$env:PYINSTALLER_CONFIG_DIR = Join-Path (Get-Location) "build\pyinstaller-cache"
.\.venv\Scripts\python -m PyInstaller --noconfirm packaging\discbridge.spec
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }

# The frozen app must pass its own self-test before we package it (GUI exe: wait for it).
$env:QT_QPA_PLATFORM = "offscreen"
$p = Start-Process -FilePath "dist\DiscBridge\DiscBridge.exe" -ArgumentList "--self-test" `
     -NoNewWindow -Wait -PassThru -RedirectStandardOutput "build\selftest.out" -RedirectStandardError "build\selftest.err"
Get-Content "build\selftest.out"
if ($p.ExitCode -ne 0) { Get-Content "build\selftest.err"; throw "frozen self-test failed" }
Remove-Item Env:\QT_QPA_PLATFORM

$version = (.\.venv\Scripts\python -c "import app; print(app.__version__)").Trim()
$iscc = (Get-Command iscc -ErrorAction SilentlyContinue).Source
if (-not $iscc) { $iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" }
& $iscc "/DAppVersion=$version" "packaging\windows\discbridge.iss"
if ($LASTEXITCODE -ne 0) { throw "Inno Setup failed" }
Write-Host "Installer: build\installer\DiscBridge-$version-setup.exe"
