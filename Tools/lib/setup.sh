# Shared set-up for Tools/test and Tools/demo: the Debian packages the build needs.
# Sourced, not run. Installs what is missing when root; otherwise prints the command and stops.

DEBERTA_APT_PACKAGES=(pkg-config zlib1g-dev libprotobuf-c-dev libopenblas-dev)

ensure_packages() {
    local missing=()
    local p
    for p in "${DEBERTA_APT_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" -eq 0 ]; then
        echo "Installing Debian packages: ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    else
        echo "Missing Debian packages: ${missing[*]}" >&2
        echo "Run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
}

repo_root() {
    cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd
}
