; Inno Setup script: per-user install of the one-folder PyInstaller build, no administrator rights.
; Build (on Windows, after `pyinstaller packaging\discbridge.spec`):
;   iscc /DAppVersion=0.1.0 packaging\windows\discbridge.iss
; (packaging\windows\build.ps1 does all steps and passes the version from app\__init__.py.)
; Output: build\installer\DiscBridge-<version>-setup.exe

#ifndef AppVersion
  #error Pass the version: iscc /DAppVersion=X.Y.Z discbridge.iss
#endif
#define AppName "DiscBridge"
#define AppExe "DiscBridge.exe"
#define SourceDir "..\..\dist\DiscBridge"

[Setup]
AppId={{6C1E2A4B-3D9F-4E57-9B1A-2F7D8C5E4A10}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=DiscBridge contributors
; Per-user install: no UAC prompt; {autopf} resolves to %LOCALAPPDATA%\Programs.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
OutputDir=..\..\build\installer
OutputBaseFilename={#AppName}-{#AppVersion}-setup
SetupIconFile=..\..\resources\icons\discbridge.ico
UninstallDisplayIcon={app}\{#AppExe}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
ChangesAssociations=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"
Name: "german"; MessagesFile: "compiler:Languages\German.isl"
Name: "french"; MessagesFile: "compiler:Languages\French.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "openwith"; Description: "Add ""Open with DiscBridge"" for .iso images, folders and drives"; GroupDescription: "Explorer:"

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Registry]
; "Open with" for .iso without becoming the default: Explorer's own Mount stays the default.
; A ProgID of our own, listed under .iso\OpenWithProgids (HKCU, per user).
Root: HKCU; Subkey: "Software\Classes\DiscBridge.iso"; ValueType: string; ValueName: ""; ValueData: "Disc image (DiscBridge)"; Flags: uninsdeletekey; Tasks: openwith
Root: HKCU; Subkey: "Software\Classes\DiscBridge.iso\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\{#AppExe},0"; Tasks: openwith
Root: HKCU; Subkey: "Software\Classes\DiscBridge.iso\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"" open ""%1"""; Tasks: openwith
Root: HKCU; Subkey: "Software\Classes\.iso\OpenWithProgids"; ValueType: string; ValueName: "DiscBridge.iso"; ValueData: ""; Flags: uninsdeletevalue; Tasks: openwith
Root: HKCU; Subkey: "Software\Classes\Applications\{#AppExe}"; ValueType: string; ValueName: "FriendlyAppName"; ValueData: "{#AppName}"; Flags: uninsdeletekey; Tasks: openwith
Root: HKCU; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".iso"; ValueData: ""; Tasks: openwith
Root: HKCU; Subkey: "Software\Classes\Applications\{#AppExe}\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"" open ""%1"""; Tasks: openwith
; Folders (a copied disc, a DICOM folder) and drives (a CD/DVD, a USB stick): a context-menu verb.
Root: HKCU; Subkey: "Software\Classes\Directory\shell\DiscBridge"; ValueType: string; ValueName: ""; ValueData: "Open with DiscBridge"; Flags: uninsdeletekey; Tasks: openwith
Root: HKCU; Subkey: "Software\Classes\Directory\shell\DiscBridge"; ValueType: string; ValueName: "Icon"; ValueData: "{app}\{#AppExe},0"; Tasks: openwith
Root: HKCU; Subkey: "Software\Classes\Directory\shell\DiscBridge\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"" open ""%1"""; Tasks: openwith
Root: HKCU; Subkey: "Software\Classes\Drive\shell\DiscBridge"; ValueType: string; ValueName: ""; ValueData: "Open with DiscBridge"; Flags: uninsdeletekey; Tasks: openwith
Root: HKCU; Subkey: "Software\Classes\Drive\shell\DiscBridge"; ValueType: string; ValueName: "Icon"; ValueData: "{app}\{#AppExe},0"; Tasks: openwith
Root: HKCU; Subkey: "Software\Classes\Drive\shell\DiscBridge\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"" open ""%1"""; Tasks: openwith

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
