#!/usr/bin/env bash
# npm run infra:build: compile and lint the Bicep with warnings treated as errors. Uses `bicep` from
# PATH, else the Bicep CLI from the NuGet package Azure.Bicep.CommandLine.linux-x64 (restored once
# into .cache/bicep with the .NET SDK).
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.49.2
bicep=$(command -v bicep || true)
if [ -z "$bicep" ]; then
  cache=.cache/bicep
  bicep=$cache/packages/azure.bicep.commandline.linux-x64/$version/tools/bicep
  if [ ! -x "$bicep" ]; then
    command -v dotnet >/dev/null || { echo "infra:build needs the Bicep CLI on PATH or the .NET SDK to fetch it" >&2; exit 1; }
    mkdir -p "$cache"
    cat > "$cache/restore.csproj" <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup><TargetFramework>netstandard2.0</TargetFramework></PropertyGroup>
  <ItemGroup><PackageDownload Include="Azure.Bicep.CommandLine.linux-x64" Version="[$version]" /></ItemGroup>
</Project>
XML
    dotnet restore "$cache/restore.csproj" --packages "$cache/packages" --nologo >/dev/null
    chmod +x "$bicep"
  fi
fi
mkdir -p dist/infra
out=$("$bicep" build infra/main.bicep --outfile dist/infra/main.json 2>&1) || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "$out" >&2
  echo "infra:build: the Bicep linter reported warnings (treated as errors)" >&2
  exit 1
fi
"$bicep" --version
echo "infra/main.bicep compiled and linted without warnings -> dist/infra/main.json"
