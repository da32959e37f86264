# Written by packaging/render.py for Tamma @{version}: removes what the install unpacked.
$ErrorActionPreference = 'Stop'
Uninstall-ChocolateyZipPackage -PackageName $env:ChocolateyPackageName -ZipFileName 'tamma-@{version}-windows-x86_64.zip'
