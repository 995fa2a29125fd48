#!/usr/bin/env python3
"""seccomp-profile.py DOCKER_PROFILE CONFIG_JSON: puts the default seccomp profile of
containers/common (Docker's format: archMap, includes/excludes) into an OCI config.json as
linux.seccomp, resolved the way Docker and Podman resolve it for x86_64 and the capabilities
the config grants. Used by hack/bench.sh to measure the cost of a realistic profile."""
import json
import sys

profile_path, config_path = sys.argv[1], sys.argv[2]
profile = json.load(open(profile_path))
config = json.load(open(config_path))
caps = set(config["process"].get("capabilities", {}).get("bounding", []))
arch = "amd64"

architectures = []
for entry in profile.get("archMap", []):
    if entry["architecture"] == "SCMP_ARCH_X86_64":
        architectures = [entry["architecture"]] + entry.get("subArchitectures", [])


def wanted(cond, match):
    if not cond:
        return match
    ok = True
    if cond.get("arches"):
        ok = ok and arch in cond["arches"]
    if cond.get("caps"):
        ok = ok and all(c in caps for c in cond["caps"])
    if cond.get("minKernel"):
        ok = ok and True
    return ok if match else not ok


syscalls = []
for s in profile["syscalls"]:
    if not wanted(s.get("includes"), True):
        continue
    if s.get("excludes") and not wanted(s["excludes"], False):
        continue
    rule = {"names": s["names"], "action": s["action"]}
    if s.get("args"):
        rule["args"] = s["args"]
    if s.get("errnoRet") is not None:
        rule["errnoRet"] = s["errnoRet"]
    syscalls.append(rule)

seccomp = {"defaultAction": profile["defaultAction"], "architectures": architectures, "syscalls": syscalls}
if profile.get("defaultErrnoRet") is not None:
    seccomp["defaultErrnoRet"] = profile["defaultErrnoRet"]
config["linux"]["seccomp"] = seccomp
json.dump(config, open(config_path, "w"), indent=2)
print(f"seccomp profile: {sum(len(s['names']) for s in syscalls)} syscall names in {len(syscalls)} rules", file=sys.stderr)
