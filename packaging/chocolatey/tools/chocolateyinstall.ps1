# Written by packaging/render.py for Tamma @{version}: downloads the release's Windows archive,
# checks its SHA-256 (from the release's SHA256SUMS) and unpacks it; Chocolatey puts a shim for
# tamma.exe on PATH.
$ErrorActionPreference = 'Stop'
$toolsDir = Split-Path -Parent $MyInvocation.MyCommand.Definition

$packageArgs = @@{
  packageName    = $env:ChocolateyPackageName
  unzipLocation  = $toolsDir
  url64bit       = 'https://github.com/@{repo}/releases/download/v@{version}/tamma-@{version}-windows-x86_64.zip'
  checksum64     = '@{sha256_windows_x86_64}'
  checksumType64 = 'sha256'
}
Install-ChocolateyZipPackage @@packageArgs

# Only tamma.exe gets a shim: the build's other executables are its own.
Get-ChildItem -Path $toolsDir -Recurse -Filter *.exe |
  Where-Object { $_.Name -ne 'tamma.exe' } |
  ForEach-Object { New-Item -ItemType File -Force -Path "$($_.FullName).ignore" | Out-Null }
