//! The boot: what `boot_cpu_data.x86_capability` and the spec-ctrl/TSX globals end up as.

use super::*;

/// `boot_cpu_data`'s identity of the CPU.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cpu {
    pub(super) vendor: Vendor,
    /// `x86` (`get_cpu_family`): base family, plus the extended family for 0xf.
    pub(super) family: u32,
    /// `x86_model`: base model, with the extended model from family 6 on.
    pub(super) model: u32,
    /// `x86_mask`.
    pub(super) stepping: u32,
    /// Leaf 1 EAX.
    pub(super) signature: u32,
}

impl Cpu {
    pub(super) fn new(raw: &CpuPolicy, vendor: Vendor) -> Cpu {
        Cpu { vendor, family: raw.family(), model: raw.model(), stepping: raw.stepping(), signature: raw.signature() }
    }

    pub(super) fn intel_fam6(&self) -> bool {
        self.vendor == Vendor::Intel && self.family == 6
    }

    pub(super) fn intel_fam6_model(&self, models: &[u32]) -> bool {
        self.intel_fam6() && models.contains(&self.model)
    }
}

/// The host featureset as Xen's boot code leaves it, and the decisions guests' policies read.
#[derive(Clone, Debug)]
pub(super) struct Boot {
    /// The modelled release.
    pub(super) release: XenRelease,
    pub(super) cpu: Cpu,
    /// `boot_cpu_data.x86_capability` (the featureset words).
    pub(super) caps: Words,
    /// `setup_force_cpu_cap` calls, re-applied on every CPU.
    pub(super) forced: Words,
    /// `setup_clear_cpu_cap` calls (with their dependents), re-applied on every CPU.
    pub(super) cleared: Words,
    /// tsx.c `rtm_disabled`.
    pub(super) rtm_disabled: bool,
    /// X86_FEATURE_SC_MSR_PV: Xen virtualises MSR_SPEC_CTRL for PV guests.
    pub(super) sc_msr_pv: bool,
    /// X86_FEATURE_SC_MSR_HVM.
    pub(super) sc_msr_hvm: bool,
    /// amd.c `amd_virt_spec_ctrl`: VIRT_SPEC_CTRL.SSBD offered to HVM guests.
    pub(super) amd_virt_spec_ctrl: bool,
    /// `cpu_has_cpuid_faulting` (the synthetic feature `probe_cpuid_faulting` forces).
    pub(super) cpuid_faulting: bool,
    /// The raw policy's SEP and CLWB (read from `raw_cpu_policy` by the guest policies).
    pub(super) raw_sep: bool,
    pub(super) raw_clwb: bool,
}

impl Boot {
    pub(super) fn new(raw: &XenPolicy, cpu: &Cpu, input: &CpuPolicy, options: &DeriveOptions) -> Boot {
        let raw_words = raw.words();
        let mut boot = Boot {
            release: options.release,
            cpu: *cpu,
            caps: [0; NR_WORDS],
            forced: [0; NR_WORDS],
            cleared: [0; NR_WORDS],
            rtm_disabled: false,
            sc_msr_pv: false,
            sc_msr_hvm: false,
            amd_virt_spec_ctrl: false,
            cpuid_faulting: false,
            raw_sep: has(&raw_words, ids::SEP),
            raw_clwb: has(&raw_words, ids::CLWB),
        };
        let hypervisor = has(&raw_words, ids::HYPERVISOR);

        // setup.c runs tsx_init() before the CPU is identified; it sees early_cpu_init()'s
        // words (leaf 1, 7:0 ECX/EDX, MSR_ARCH_CAPS).
        let mut opt_tsx = boot.tsx_init(&raw_words);

        // identify_cpu() -> generic_identify(): the CPUID words. The BSP is identified before
        // xstate_init() sets CR4.OSXSAVE and before setup.c sets CR4.PKE, so the OS bits read
        // 0 (and the APs' words are ANDed in). Extended words only with a valid 0x8000xxxx max.
        boot.caps = raw_words;
        clear(&mut boot.caps, ids::OSXSAVE);
        clear(&mut boot.caps, ids::OSPKE);
        if raw.max_extd() >> 16 != 0x8000 {
            for word in ["e1d", "e1c", "e7d", "e8b", "e21a", "e21c"] {
                if let Some(info) = WORDS.iter().find(|w| w.short_name == word) {
                    boot.caps[info.index] = 0;
                }
            }
        }
        boot.vendor_init(hypervisor);
        // identify_cpu(): clamp to known, then every CPU gets the forced/cleared bits.
        and(&mut boot.caps, &known(boot.release));
        for i in 0..NR_WORDS {
            boot.caps[i] = (boot.caps[i] | boot.forced[i]) & !boot.cleared[i];
        }
        // xstate_init(): no XSAVE without leaf 0xd.
        if has(&boot.caps, ids::XSAVE) && raw.max_basic() < 0xd {
            boot.clear_cap(ids::XSAVE);
        }

        // init_speculation_mitigations() and the errata checks of the boot path.
        boot.retpoline_calculations(options);
        boot.srso_calculations(raw, hypervisor, options);
        boot.rfds_calculations(hypervisor);
        boot.tsa_calculations(hypervisor, options);
        opt_tsx = boot.taa_tsx_choice(opt_tsx);
        boot.rtm_disabled =
            (has(&boot.caps, ids::TSX_CTRL) || has(&boot.caps, ids::TSX_FORCE_ABORT)) && opt_tsx & 1 == 0;
        boot.gds_calculations(hypervisor);
        boot.its_calculations(hypervisor);
        boot.msr_spec_ctrl(raw);
        boot.deadline_errata(hypervisor, options);

        // probe_cpuid_faulting(): Intel probes (not on family 0xf unless virtualised); AMD and
        // Hygon only when virtualised (amd_init_levelling); Centaur/Shanghai never.
        let probed = match cpu.vendor {
            Vendor::Intel => cpu.family != 0xf || hypervisor,
            Vendor::Amd | Vendor::Hygon => hypervisor,
            _ => false,
        };
        boot.cpuid_faulting = probed && options.cpuid_faulting.unwrap_or(input.cpuid_faulting());
        boot
    }

    /// `setup_force_cpu_cap`: refused for a feature already cleared.
    pub(super) fn force_cap(&mut self, id: FeatureId) {
        if self.cleared[id.word()] & id.mask() != 0 {
            return;
        }
        self.forced[id.word()] |= id.mask();
        self.caps[id.word()] |= id.mask();
    }

    /// `setup_clear_cpu_cap`: the feature and everything depending on it.
    pub(super) fn clear_cap(&mut self, id: FeatureId) {
        let mut gone = dependents(id, self.release);
        gone[id.word()] |= id.mask();
        for ((cleared, cap), gone) in self.cleared.iter_mut().zip(self.caps.iter_mut()).zip(gone) {
            *cleared |= gone;
            *cap &= !gone;
        }
    }

    pub(super) fn has(&self, id: FeatureId) -> bool {
        has(&self.caps, id)
    }

    /// tsx.c `tsx_init` (first call): returns `opt_tsx` (-1 default, 0 off, 1 on).
    ///
    /// - TSX_CTRL with SRBDS_CTRL and RTM_ALWAYS_ABORT (Feb 2022 microcode de-featuring TSX on
    ///   client parts): default `tsx=0`.
    /// - TSX_FORCE_ABORT: default `tsx = !RTM_ALWAYS_ABORT`.
    /// - HLE and RTM forced visible in Xen's view whenever either control exists.
    pub(super) fn tsx_init(&mut self, early: &Words) -> i8 {
        let mut opt_tsx: i8 = -1;
        let tsx_ctrl = has(early, ids::TSX_CTRL);
        let force_abort = has(early, ids::TSX_FORCE_ABORT);
        let always_abort = has(early, ids::RTM_ALWAYS_ABORT);
        if tsx_ctrl && has(early, ids::SRBDS_CTRL) && always_abort {
            opt_tsx = 0;
        }
        if force_abort && opt_tsx < 0 {
            opt_tsx = i8::from(!always_abort);
        }
        if always_abort {
            self.force_cap(ids::RTM_ALWAYS_ABORT);
        }
        if tsx_ctrl || force_abort {
            self.force_cap(ids::HLE);
            self.force_cap(ids::RTM);
        }
        opt_tsx
    }

    /// The vendor `c_init` hooks (amd.c `init_amd`, hygon.c `init_hygon`, intel.c
    /// `init_intel`, common.c `default_init`): plain bit edits on every CPU and their
    /// `setup_*_cpu_cap` calls.
    pub(super) fn vendor_init(&mut self, hypervisor: bool) {
        let cpu = self.cpu;
        match cpu.vendor {
            Vendor::Amd | Vendor::Hygon => {
                // Family 0xf/0x11 LFENCE is dispatch serialising; on later parts amd_init_lfence()
                // sets DE_CFG.LFENCE_SERIALISE and reads it back. Under a hypervisor the MSR is
                // taken not to stick (as under QEMU/TCG, the virtualised Xen this project boots:
                // Xen 4.20 on `-cpu EPYC` reports no LFENCE_DISPATCH).
                let always = matches!(cpu.family, 0xf | 0x11);
                if !self.has(ids::LFENCE_DISPATCH) && (always || !hypervisor) {
                    self.force_cap(ids::LFENCE_DISPATCH);
                }
                if cpu.vendor == Vendor::Amd {
                    // The 3DNow! alias of PBE.
                    clear(&mut self.caps, ids::PBE);
                    // Erratum #110: LAHF_LM before K8 revision D.
                    if cpu.family == 0xf && cpu.model < 0x14 {
                        clear(&mut self.caps, ids::LAHF_LM);
                    }
                    // Zen2's null-selector behaviour, probed when not virtualised.
                    if !hypervisor && !self.has(ids::NSCB) && cpu.family == 0x17 && self.has(ids::AMD_STIBP) {
                        self.force_cap(ids::NSCB);
                    }
                    match cpu.family {
                        // RDRAND may stop working after S3 on Fam15h/16h.
                        0x15 | 0x16 if self.has(ids::RDRAND) => self.clear_cap(ids::RDRAND),
                        // Zen3 predates BTC_NO.
                        0x19 if !hypervisor => set(&mut self.caps, ids::BTC_NO),
                        _ => {}
                    }
                    // Fam15h models 0x10-0x1f: re-enable TopologyExtensions hidden by firmware.
                    if cpu.family == 0x15 && (0x10..=0x1f).contains(&cpu.model) && !hypervisor {
                        set(&mut self.caps, ids::TOPOEXT);
                    }
                    // MWAIT does not deep-sleep on Fam10h.
                    if cpu.family == 0x10 {
                        clear(&mut self.caps, ids::MONITOR);
                    }
                }
                // SYSENTER does not work in long mode.
                clear(&mut self.caps, ids::SEP);
            }
            Vendor::Intel => {
                // The GDS microcode makes CLWB slow on SKX/CLX/CPX.
                if cpu.intel_fam6_model(&[0x55]) {
                    self.clear_cap(ids::CLWB);
                }
            }
            // centaur.c/shanghai.c change no featureset bit; other vendors are refused.
            Vendor::Centaur | Vendor::Shanghai | Vendor::Other(_) => {}
        }
    }

    /// spec_ctrl.c `retpoline_calculations`: RRSBA with eIBRS; RSBA on parts where retpoline
    /// is unsafe.
    pub(super) fn retpoline_calculations(&mut self, options: &DeriveOptions) {
        if !self.cpu.intel_fam6() {
            return;
        }
        if self.has(ids::EIBRS) {
            if !self.has(ids::RRSBA) {
                self.force_cap(ids::RRSBA);
            }
            return;
        }
        if self.has(ids::RSBA) || self.has(ids::ARCH_CAPS) {
            return;
        }
        let safe = match self.cpu.model {
            0x17 | 0x1d | 0x1e | 0x1f | 0x1a | 0x2e | 0x25 | 0x2c | 0x2f | 0x2a | 0x2d | 0x3a | 0x3e | 0x3c | 0x3f
            | 0x45 | 0x46 => true,
            // Broadwell: safe from a microcode revision on (per stepping for Broadwell D).
            0x3d | 0x47 | 0x4f => options.current_microcode,
            0x56 => (2..=5).contains(&self.cpu.stepping) && options.current_microcode,
            0x1c | 0x26 | 0x27 | 0x35 | 0x36 | 0x37 | 0x4d | 0x4c | 0x4a | 0x5a | 0x5c | 0x5f => true,
            _ => false,
        };
        if !safe {
            self.force_cap(ids::RSBA);
        }
    }

    /// spec_ctrl.c `srso_calculations` (AMD/Hygon, not virtualised).
    pub(super) fn srso_calculations(&mut self, raw: &XenPolicy, hypervisor: bool, options: &DeriveOptions) {
        if !self.cpu.vendor.is_amd_like() || hypervisor {
            return;
        }
        let family = self.cpu.family;
        if family == 0x19 {
            // The SBPB write succeeds with the SRSO microcode.
            if options.current_microcode {
                self.force_cap(ids::IBPB_BRTYPE);
                self.force_cap(ids::SBPB);
            }
        } else if family < 0x19 && self.has(ids::IBPB) {
            self.force_cap(ids::IBPB_BRTYPE);
        }
        // check_smt_enabled(): siblings from 0x8000001e EBX[15:8] (TOPOEXT).
        let smt = self.has(ids::TOPOEXT) && raw.max_extd() >= 0x8000_001e && (raw.extd[0x1e].ebx >> 8) & 0xff != 0;
        if !smt && (family == 0x17 || family == 0x18) {
            self.force_cap(ids::SRSO_NO);
        }
    }

    /// spec_ctrl.c `rfds_calculations`: RFDS_NO on unaffected Intel family 6 parts.
    pub(super) fn rfds_calculations(&mut self, hypervisor: bool) {
        if !self.cpu.intel_fam6() || self.has(ids::RFDS_NO) || self.has(ids::RFDS_CLEAR) || hypervisor {
            return;
        }
        let affected = match self.cpu.model {
            // Alder/Raptor Lake: the Xeon SKUs (not hybrid) have no Gracemont cores.
            0x97 | 0xb7 => self.has(ids::HYBRID),
            0x9a | 0xba | 0xbf | 0x5c | 0x5f | 0x7a | 0x86 | 0x96 | 0x9c | 0xbe => true,
            _ => false,
        };
        if !affected {
            self.force_cap(ids::RFDS_NO);
        }
    }

    /// spec_ctrl.c `tsa_calculations` (AMD, not virtualised).
    pub(super) fn tsa_calculations(&mut self, hypervisor: bool, options: &DeriveOptions) {
        if self.cpu.vendor != Vendor::Amd || hypervisor || self.has(ids::TSA_SQ_NO) || self.has(ids::TSA_L1_NO) {
            return;
        }
        if self.cpu.family != 0x19 {
            self.force_cap(ids::TSA_SQ_NO);
            self.force_cap(ids::TSA_L1_NO);
            return;
        }
        // The microcode patch level's top 24 bits name the part (`cpu_sig.rev >> 8`).
        const KNOWN: [u32; 16] = [
            0x0a0011, 0x0a0012, 0x0a0082, 0x0a1011, 0x0a1012, 0x0a1081, 0x0a2010, 0x0a2012, 0x0a4041, 0x0a5000,
            0x0a6012, 0x0a7041, 0x0a7052, 0x0a7080, 0x0a70c0, 0x0aa002,
        ];
        if options.current_microcode && KNOWN.contains(&amd_patch_part(self.cpu.signature)) {
            self.force_cap(ids::VERW_CLEAR);
        }
    }

    /// spec_ctrl.c: the TAA default (`opt_tsx == -1` on a TAA-affected part with TSX_CTRL →
    /// `tsx=0`; the SMT/VERW condition is always true at the defaults) and the second
    /// `tsx_init()` call it makes.
    pub(super) fn taa_tsx_choice(&mut self, opt_tsx: i8) -> i8 {
        let taa = (self.has(ids::RTM) || self.has(ids::TSX_CTRL)) && self.has(ids::MDS_NO) && !self.has(ids::TAA_NO);
        if opt_tsx == -1 && taa && self.has(ids::TSX_CTRL) {
            0
        } else {
            opt_tsx
        }
    }

    /// spec_ctrl.c `gds_calculations`: GDS_NO when unaffected or mitigated by microcode
    /// (GDS_CTRL, assumed not locked off); AVX off when affected without it.
    pub(super) fn gds_calculations(&mut self, hypervisor: bool) {
        if !self.cpu.intel_fam6() {
            return;
        }
        let affected = if self.has(ids::GDS_NO) {
            false
        } else if self.has(ids::GDS_CTRL) {
            true
        } else if !self.has(ids::AVX) {
            false
        } else {
            matches!(self.cpu.model, 0x55 | 0x6a | 0x6c | 0x7e | 0x8c | 0x8d | 0x8e | 0x9e | 0xa5 | 0xa6 | 0xa7)
                || hypervisor
        };
        if self.has(ids::GDS_CTRL) {
            if !self.has(ids::GDS_NO) {
                self.force_cap(ids::GDS_NO);
            }
        } else if !affected {
            self.force_cap(ids::GDS_NO);
        } else if self.has(ids::AVX) {
            self.clear_cap(ids::AVX);
        }
    }

    /// spec_ctrl.c `its_calculations`: ITS_NO synthesised on unaffected parts.
    pub(super) fn its_calculations(&mut self, hypervisor: bool) {
        if self.has(ids::ITS_NO) || hypervisor || self.cpu.vendor != Vendor::Intel {
            return;
        }
        let affected = self.cpu.family == 6
            && self.has(ids::EIBRS)
            && !self.has(ids::BHI_CTRL)
            && matches!(self.cpu.model, 0x55 | 0x8e | 0x9e | 0xa5 | 0xa6 | 0x6a | 0x6c | 0x7e | 0x8c | 0x8d | 0xa7);
        if !affected {
            self.force_cap(ids::ITS_NO);
        }
    }

    /// spec_ctrl.c: SC_MSR_PV/HVM (MSR_SPEC_CTRL virtualised: always on Intel with IBRSB; on
    /// AMD for HVM only, with IBRS and SVM's SPEC_CTRL bit) and amd.c/spec_ctrl.c
    /// `amd_virt_spec_ctrl` (VIRT_SSBD without AMD_SSBD: from the outer hypervisor, or the
    /// LS_CFG MSR of families 0x15–0x18).
    pub(super) fn msr_spec_ctrl(&mut self, raw: &XenPolicy) {
        if self.has(ids::IBRSB) {
            self.sc_msr_pv = true;
            self.sc_msr_hvm = true;
        }
        if self.has(ids::IBRS) && raw.max_extd() >= 0x8000_000a && raw.extd[0xa].edx & (1 << 20) != 0 {
            self.sc_msr_hvm = true;
        }
        // set_legacy_ssbd(): LS_CFG's SSBD bit, read back. Under QEMU/TCG it sticks (Xen 4.20
        // on `-cpu EPYC` offers VIRT_SSBD to HVM guests), so a hypervisor does not rule it out.
        let legacy_ssbd = self.cpu.vendor.is_amd_like()
            && (0x15..=0x18).contains(&self.cpu.family)
            && !self.has(ids::SSB_NO)
            && !self.has(ids::AMD_SSBD)
            && !self.has(ids::VIRT_SSBD);
        self.amd_virt_spec_ctrl = !self.has(ids::AMD_SSBD) && (self.has(ids::VIRT_SSBD) || legacy_ssbd);
    }

    /// apic.c `check_deadline_errata`: TSC_DEADLINE off on parts whose microcode is older
    /// than the fix (always for steppings with no fixed revision).
    pub(super) fn deadline_errata(&mut self, hypervisor: bool, options: &DeriveOptions) {
        if hypervisor || !self.cpu.intel_fam6() || !self.has(ids::TSC_DEADLINE) {
            return;
        }
        // None: no fixed revision (always affected); Some(0): never affected.
        let stepping = self.cpu.stepping;
        let fixed: Option<u32> = match self.cpu.model {
            0x3c => Some(0x22),
            0x3f => match stepping {
                2 => Some(0x3a),
                4 => Some(0x0f),
                _ => None,
            },
            0x45 => Some(0x20),
            0x46 => Some(0x17),
            0x3d => Some(0x25),
            0x47 => Some(0x17),
            0x4f => Some(0x0b00_0020),
            0x56 => match stepping {
                2 => Some(0x11),
                3 => Some(0x0700_000e),
                4 => Some(0x0f00_000c),
                5 => Some(0x0e00_0003),
                _ => None,
            },
            0x4e | 0x5e => Some(0xb2),
            0x55 => match stepping {
                0..=2 => None,
                3 => Some(0x0100_0136),
                4 => Some(0x0200_0014),
                _ => Some(0),
            },
            0x8e | 0x9e => Some(0x52),
            _ => Some(0),
        };
        let affected = match fixed {
            None => true,
            Some(0) => false,
            Some(_) => !options.current_microcode,
        };
        if affected {
            self.clear_cap(ids::TSC_DEADLINE);
        }
    }
}

/// The part an AMD microcode patch level names (`cpu_sig.rev >> 8`), from leaf 1 EAX:
/// extended family, extended model, 0, base model, stepping.
pub(super) fn amd_patch_part(signature: u32) -> u32 {
    let ext_family = (signature >> 20) & 0xff;
    let ext_model = (signature >> 16) & 0xf;
    let model = (signature >> 4) & 0xf;
    let stepping = signature & 0xf;
    (ext_family << 16) | (ext_model << 12) | (model << 4) | stepping
}
