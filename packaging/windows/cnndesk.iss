; Inno Setup script for the Windows installer (built by .github/workflows/installers.yml; untested here).
;   iscc /DAppVersion=0.1.0 /DSourceDir=..\..\dist\cnndesk /DOutputDir=..\..\dist packaging\windows\cnndesk.iss
#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef SourceDir
  #define SourceDir "..\..\dist\cnndesk"
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist"
#endif

[Setup]
AppId={{4DF4325B-AD68-566C-9750-EF6F7A14F3EC}
AppName=cnndesk
AppVersion={#AppVersion}
AppPublisher=cnndesk developers
DefaultDirName={autopf}\cnndesk
DefaultGroupName=cnndesk
; per-user install by default (no admin rights needed); the dialog offers all users
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename=cnndesk-{#AppVersion}-windows-x64-setup
SetupIconFile=..\..\build\icons\cnndesk.ico
UninstallDisplayIcon={app}\cnndesk.exe
Compression=lzma2/max
SolidCompression=yes
ChangesEnvironment=yes
LicenseFile=..\..\LICENSE

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add cnndesk-cli to the PATH"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\cnndesk"; Filename: "{app}\cnndesk.exe"
Name: "{group}\Uninstall cnndesk"; Filename: "{uninstallexe}"
Name: "{autodesktop}\cnndesk"; Filename: "{app}\cnndesk.exe"; Tasks: desktopicon

[Registry]
Root: HKCU; Subkey: "Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; \
    Tasks: addtopath; Check: NeedsAddPath(ExpandConstant('{app}'))

[Run]
Filename: "{app}\cnndesk.exe"; Description: "Start cnndesk"; Flags: nowait postinstall skipifsilent

[Code]
function NeedsAddPath(Dir: string): Boolean;
var
  Paths: string;
begin
  if not RegQueryStringValue(HKCU, 'Environment', 'Path', Paths) then
  begin
    Result := True;
    exit;
  end;
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Paths) + ';') = 0;
end;
