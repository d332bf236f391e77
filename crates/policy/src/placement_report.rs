//! Placements and plans as text, as a compact matrix, and as JSON documents a toolstack can
//! store (`cpupolicy-placement`, `cpupolicy-plan`).

use cpupolicy_featureset::GuestKind;
use serde_json::{json, Value};

use crate::level::feature_name;
use crate::placement::{Placement, Plan, PolicyChange, Refusal, Stranding, VmPlan};
use crate::report::guest_kind_name;

/// The `format` of a placement document.
pub const PLACEMENT_FORMAT: &str = "cpupolicy-placement";
/// The `format` of a plan document.
pub const PLAN_FORMAT: &str = "cpupolicy-plan";

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Placement<'_> {
    fn vm_label(&self, vm: usize) -> String {
        let (name, _, host) = self.vm(vm);
        match host {
            Some(h) => format!("{name}@{}", self.host_names()[h]),
            None => name.to_string(),
        }
    }

    /// VMs that no host but their own can take, and VMs whose own host cannot take them.
    fn attention(&self) -> Vec<(usize, &'static str)> {
        let mut out = Vec::new();
        for vm in 0..self.fleet().vm_count() {
            let (_, _, own) = self.vm(vm);
            if own.is_some_and(|h| !self.accepts(h, vm)) {
                out.push((vm, "the host it runs on cannot take it (it did not boot there, or the host changed)"));
            } else if self.other_hosts_accepting(vm) == 0 {
                out.push((vm, "no other host can take it"));
            }
        }
        out
    }

    /// The placement for people: the host classes, then per VM class the host classes that
    /// take it and why the others do not, then per host class the VM classes it takes, then
    /// the VMs that cannot move.
    pub fn to_text(&self, kind: GuestKind) -> String {
        let hosts = self.host_class_members();
        let vms = self.vm_class_members();
        let names = self.host_names();
        let total_hosts = names.len();
        let mut out = format!(
            "{} in {}, {} in {} ({} guests)\nhost classes:\n",
            plural(total_hosts, "host", "hosts"),
            plural(hosts.len(), "class", "classes"),
            plural(self.fleet().vm_count(), "VM", "VMs"),
            plural(vms.len(), "class", "classes"),
            guest_kind_name(kind)
        );
        for (c, members) in hosts.iter().enumerate() {
            let list: Vec<&str> = members.iter().map(|&h| names[h].as_str()).collect();
            out += &format!("  H{} ({}): {}\n", c + 1, plural(members.len(), "host", "hosts"), list.join(" "));
        }
        out += "VM classes:\n";
        for (c, members) in vms.iter().enumerate() {
            let list: Vec<String> = members.iter().map(|&v| self.vm_label(v)).collect();
            out += &format!("  V{} ({}): {}\n", c + 1, plural(members.len(), "VM", "VMs"), list.join(" "));
            let taking: Vec<usize> = self.accepting_classes(c).collect();
            let count: usize = taking.iter().map(|&h| hosts[h].len()).sum();
            let labels: Vec<String> = taking.iter().map(|h| format!("H{}", h + 1)).collect();
            out += &format!(
                "    may run on: {} ({count} of {total_hosts} hosts)\n",
                if labels.is_empty() { "nothing".to_string() } else { labels.join(" ") }
            );
            for h in (0..hosts.len()).filter(|h| !taking.contains(h)) {
                out += &format!("    not on H{}: {}\n", h + 1, self.verdict(c, h).reasons().join("; "));
            }
        }
        out += "hosts accept:\n";
        for (h, members) in hosts.iter().enumerate() {
            let taking: Vec<usize> = (0..vms.len()).filter(|&v| self.verdict(v, h).accepted).collect();
            let count: usize = taking.iter().map(|&v| vms[v].len()).sum();
            let labels: Vec<String> = taking.iter().map(|v| format!("V{}", v + 1)).collect();
            out += &format!(
                "  H{} ({}): {} ({count} of {} VMs)\n",
                h + 1,
                plural(members.len(), "host", "hosts"),
                if labels.is_empty() { "nothing".to_string() } else { labels.join(" ") },
                self.fleet().vm_count()
            );
        }
        let attention = self.attention();
        if !attention.is_empty() {
            out += "cannot move:\n";
            for (vm, why) in attention {
                out += &format!("  {}: {why}\n", self.vm_label(vm));
            }
        }
        out
    }

    /// The placement as a matrix of VM classes (rows) by host classes (columns), `+` where the
    /// host class takes the VM class, `.` where it does not; then the members of each class.
    pub fn to_matrix(&self) -> String {
        let hosts = self.host_class_members();
        let vms = self.vm_class_members();
        let width = format!("H{}", hosts.len()).len().max(2);
        let label_width = format!("V{}", vms.len()).len();
        let mut out = format!("{:label_width$}", "");
        for h in 0..hosts.len() {
            out += &format!(" {:>width$}", format!("H{}", h + 1));
        }
        out += "\n";
        for v in 0..vms.len() {
            out += &format!("{:label_width$}", format!("V{}", v + 1));
            for h in 0..hosts.len() {
                out += &format!(" {:>width$}", if self.verdict(v, h).accepted { "+" } else { "." });
            }
            out += "\n";
        }
        let names = self.host_names();
        for (h, members) in hosts.iter().enumerate() {
            let list: Vec<&str> = members.iter().map(|&i| names[i].as_str()).collect();
            out += &format!("H{}: {}\n", h + 1, list.join(" "));
        }
        for (v, members) in vms.iter().enumerate() {
            let list: Vec<String> = members.iter().map(|&i| self.vm_label(i)).collect();
            out += &format!("V{}: {}\n", v + 1, list.join(" "));
        }
        out
    }

    /// The placement as a JSON document (`format` `cpupolicy-placement`): `hosts` and `vms`
    /// (each with its `class`, VMs with the `host` they run on), `host_classes` (member hosts,
    /// the VM classes each `accepts`), `vm_classes` (member VMs, the host classes that accept
    /// them, and per refusing host class the `features` and `reasons`), and `cannot_move`.
    pub fn to_json(&self, kind: GuestKind) -> Value {
        let hosts = self.host_class_members();
        let vms = self.vm_class_members();
        let names = self.host_names();
        let vm_classes: Vec<Value> = vms
            .iter()
            .enumerate()
            .map(|(c, members)| {
                let refused: Vec<Value> = (0..hosts.len())
                    .filter(|&h| !self.verdict(c, h).accepted)
                    .map(|h| {
                        let verdict = self.verdict(c, h);
                        json!({"host_class": h,
                               "features": verdict.features().into_iter().map(feature_name).collect::<Vec<_>>(),
                               "reasons": verdict.reasons()})
                    })
                    .collect();
                json!({"vms": members.iter().map(|&v| self.vm(v).0).collect::<Vec<_>>(),
                       "accepted_by": self.accepting_classes(c).collect::<Vec<_>>(),
                       "refused_by": refused})
            })
            .collect();
        let host_classes: Vec<Value> = hosts
            .iter()
            .enumerate()
            .map(|(h, members)| {
                json!({"hosts": members.iter().map(|&i| names[i].as_str()).collect::<Vec<_>>(),
                       "accepts": (0..vms.len()).filter(|&v| self.verdict(v, h).accepted).collect::<Vec<_>>()})
            })
            .collect();
        json!({
            "format": PLACEMENT_FORMAT,
            "version": crate::JSON_VERSION,
            "kind": guest_kind_name(kind),
            "hosts": names.iter().enumerate().map(|(i, n)| json!({"name": n, "class": self.host_class(i)})).collect::<Vec<_>>(),
            "vms": (0..self.fleet().vm_count()).map(|v| {
                let (name, class, host) = self.vm(v);
                json!({"name": name, "class": class, "host": host.map(|h| names[h].as_str()),
                       "other_hosts_accepting": self.other_hosts_accepting(v)})
            }).collect::<Vec<_>>(),
            "host_classes": host_classes,
            "vm_classes": vm_classes,
            "cannot_move": self.attention().into_iter().map(|(v, why)| json!({"vm": self.vm(v).0, "why": why})).collect::<Vec<_>>(),
        })
    }
}

fn refusal_json(refusal: &Refusal) -> Value {
    json!({"host": refusal.host, "features": refusal.features.iter().map(|id| feature_name(*id)).collect::<Vec<_>>(),
           "reasons": refusal.reasons})
}

fn stranding_json(stranding: &Stranding) -> Value {
    let mut value = match stranding {
        Stranding::CannotStay(refusal) | Stranding::ShutOut(refusal) => refusal_json(refusal),
        Stranding::NowhereToGo { host_leaves, lost } => json!({"host_leaves": host_leaves, "lost": lost}),
    };
    value["kind"] = json!(stranding.kind());
    value["message"] = json!(stranding.to_string());
    value
}

fn policy_change_json(change: &PolicyChange) -> Value {
    let features = |list: &[(cpupolicy_featureset::FeatureId, Option<String>)]| -> Vec<Value> {
        list.iter().map(|(id, cause)| json!({"feature": feature_name(*id), "cause": cause})).collect()
    };
    json!({
        "before": change.featuresets.0,
        "after": change.featuresets.1,
        "lost": features(&change.lost),
        "gained": features(&change.gained),
        "limits": change.limits.iter().map(|(field, b, a)| json!({"field": field.name(), "before": b, "after": a})).collect::<Vec<_>>(),
    })
}

fn vm_label(vm: &VmPlan) -> String {
    match &vm.host {
        Some(host) => format!("{} (on {host})", vm.name),
        None => vm.name.clone(),
    }
}

fn policy_change_text(title: &str, change: &PolicyChange) -> String {
    let mut out = format!("{title}:\n");
    if change.is_empty() {
        return out + "  unchanged\n";
    }
    out += &format!("  before: {}\n  after:  {}\n", change.featuresets.0, change.featuresets.1);
    for (label, list) in [("loses", &change.lost), ("gains", &change.gained)] {
        // One line per cause, its features in featureset order.
        let mut by_cause: Vec<(String, Vec<String>)> = Vec::new();
        for (id, cause) in list.iter() {
            let cause = match (cause, label) {
                (None, _) => String::new(),
                (Some(c), "loses") => format!(" ({c})"),
                (Some(c), _) => format!(" (before: {c})"),
            };
            match by_cause.iter_mut().find(|(c, _)| *c == cause) {
                Some((_, features)) => features.push(feature_name(*id)),
                None => by_cause.push((cause, vec![feature_name(*id)])),
            }
        }
        for (cause, features) in by_cause {
            out += &format!("  {label}{cause}: {}\n", features.join(" "));
        }
    }
    for (field, before, after) in &change.limits {
        out += &format!("  {field}: {before:#x} -> {after:#x}\n");
    }
    out
}

impl Plan {
    /// The plan for people: the stranded VMs first, then how the pool default and acceptance
    /// move, then every VM whose reach changes.
    pub fn to_text(&self, kind: GuestKind) -> String {
        let mut out = format!(
            "change: {} ({} -> {}, {} guests)\n",
            self.changes.join(", "),
            plural(self.hosts.0.len(), "host", "hosts"),
            plural(self.hosts.1.len(), "host", "hosts"),
            guest_kind_name(kind)
        );
        let stranded: Vec<&VmPlan> = self.vms.iter().filter(|v| v.is_stranded()).collect();
        if stranded.is_empty() {
            out += "stranded: none\n";
        } else {
            out += &format!("STRANDED: {} of {}\n", stranded.len(), plural(self.vms.len(), "VM", "VMs"));
            for vm in &stranded {
                for stranding in &vm.strandings {
                    out += &format!("  {}: {stranding}\n", vm_label(vm));
                }
            }
        }
        out += &policy_change_text("pool default (what new VMs boot with)", &self.default);
        out += &policy_change_text("acceptance (what every host takes from a migration)", &self.acceptance);
        let moved: Vec<&VmPlan> = self.vms.iter().filter(|v| v.reach_changes()).collect();
        if moved.is_empty() {
            out += "VMs: no VM's reach changes\n";
        } else {
            out += "VMs whose reach changes:\n";
            for vm in moved {
                out += &format!(
                    "  {}: reaches {} of {} -> {} of {}",
                    vm_label(vm),
                    vm.reach.0,
                    plural(self.hosts.0.len(), "host", "hosts"),
                    vm.reach.1,
                    plural(self.hosts.1.len(), "host", "hosts")
                );
                if !vm.no_longer_reaches.is_empty() {
                    out += &format!("; no longer reaches {}", vm.no_longer_reaches.join(" "));
                }
                if !vm.newly_reaches.is_empty() {
                    out += &format!("; newly reaches {}", vm.newly_reaches.join(" "));
                }
                if !vm.joined_refusing.is_empty() {
                    out += &format!("; cannot reach {} (joins)", vm.joined_refusing.join(" "));
                }
                out += "\n";
            }
        }
        out
    }

    /// The plan as a JSON document (`format` `cpupolicy-plan`): `changes`, `hosts_before`,
    /// `hosts_after`, `strands`, `default` and `acceptance` (featureset `before` and `after`,
    /// features `lost` and `gained` with their `cause`, `limits` that moved), `pool_after` (the
    /// pool document after the change), and `vms` (stranded first: `strandings`, `reach`,
    /// `no_longer_reaches`, `newly_reaches`, `joined_refusing`).
    pub fn to_json(&self, kind: GuestKind) -> Result<Value, serde_json::Error> {
        let labels: Vec<&str> = self.after_labels.iter().map(String::as_str).collect();
        let mut pool_after = crate::report::pool_json_named(&self.after, &labels, kind, true, &[])?;
        pool_after["hosts"] = json!(self.hosts.1);
        // The hazards need the hosts' own policies, which a plan does not keep.
        if let Some(object) = pool_after.as_object_mut() {
            object.remove("hazards");
        }
        Ok(json!({
            "format": PLAN_FORMAT,
            "version": crate::JSON_VERSION,
            "kind": guest_kind_name(kind),
            "changes": self.changes,
            "hosts_before": self.hosts.0,
            "hosts_after": self.hosts.1,
            "strands": self.strands(),
            "default": policy_change_json(&self.default),
            "acceptance": policy_change_json(&self.acceptance),
            "vms": self.vms.iter().map(|vm| json!({
                "name": vm.name,
                "host": vm.host,
                "reach": {"before": vm.reach.0, "after": vm.reach.1},
                "no_longer_reaches": vm.no_longer_reaches,
                "newly_reaches": vm.newly_reaches,
                "joined_refusing": vm.joined_refusing,
                "strandings": vm.strandings.iter().map(stranding_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "pool_after": pool_after,
        }))
    }
}
