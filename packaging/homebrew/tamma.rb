# Homebrew formula for Tamma, written into the tap (github.com/@{owner}/homebrew-tap,
# Formula/tamma.rb) by the release workflow: packaging/render.py fills in the version and the
# SHA-256 of each standalone archive of the release. `brew install @{owner}/tap/tamma`.
class Tamma < Formula
  desc "Autonomous development agent on Temporal: issue in, merged branch out"
  homepage "https://github.com/@{repo}"
  version "@{version}"
  license "MIT"

  on_macos do
    on_arm do
      url "https://github.com/@{repo}/releases/download/v@{version}/tamma-@{version}-macos-arm64.tar.gz"
      sha256 "@{sha256_macos_arm64}"
    end
    on_intel do
      url "https://github.com/@{repo}/releases/download/v@{version}/tamma-@{version}-macos-x86_64.tar.gz"
      sha256 "@{sha256_macos_x86_64}"
    end
  end

  on_linux do
    on_arm do
      url "https://github.com/@{repo}/releases/download/v@{version}/tamma-@{version}-linux-arm64.tar.gz"
      sha256 "@{sha256_linux_arm64}"
    end
    on_intel do
      url "https://github.com/@{repo}/releases/download/v@{version}/tamma-@{version}-linux-x86_64.tar.gz"
      sha256 "@{sha256_linux_x86_64}"
    end
  end

  depends_on "git"

  def install
    # the one-folder build: the executable, its _internal folder and the temporal dev server,
    # which tamma finds beside its executable
    libexec.install Dir["*"]
    bin.install_symlink libexec/"tamma"
  end

  test do
    assert_match "tamma #{version}", shell_output("#{bin}/tamma --version")
    assert_match "temporal_cli", shell_output("#{bin}/tamma version")
  end
end
