# Shared by the CI scripts that set up container engines (sourced, not run).

# containers.conf for podman on this kind of VM: runc (crun refuses its hybrid cgroups) and no more
# rlimits than the VM grants; written to $1/containers.conf and exported as CONTAINERS_CONF.
write_containers_conf() {
  local nproc; nproc=$(ulimit -Hu); { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
  cat >"$1/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
  export CONTAINERS_CONF="$1/containers.conf"
}

# The Debian mirror apt itself uses ($MIRROR wins), for debootstrap.
debian_mirror() {
  local m=${MIRROR:-$( { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null || true; } \
    | grep -E '^(URIs:|deb )' | grep -v -- '-security' | sed -E 's/^URIs: *//; s/^deb (\[[^]]*\] )?//' | awk '{print $1}' | { grep -m1 debian || true; })}
  [ -n "$m" ] || { echo "no Debian mirror in apt's sources: set MIRROR" >&2; return 1; }
  echo "$m"
}
