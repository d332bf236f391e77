//! Levelling and the migration check on arbitrary policies: no panic, every host accepts both
//! the pool default and the acceptance policy, and an explained loss blames exactly the hosts
//! lacking the feature.
#![no_main]

use cpupolicy_policy::{check_migration, level_pool, LevelOptions, LossCause, PoolHost};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else { return };
    let count = usize::from(count % 4) + 1;
    let size = rest.len() / count;
    let hosts: Vec<PoolHost> = (0..count)
        .map(|i| {
            let chunk = &rest[i * size..(i + 1) * size];
            let (default, max) = chunk.split_at(chunk.len() / 2);
            let (default, max) = (policy_from(default), policy_from(max));
            if i % 2 == 0 {
                PoolHost::from_single(format!("h{i}"), max)
            } else {
                PoolHost::new(format!("h{i}"), default, max)
            }
        })
        .collect();
    let Ok(pool) = level_pool(&hosts, LevelOptions { explain: count > 2, ..Default::default() }) else { return };
    for (levelled, of_role) in [
        (&pool.default, (|h: &PoolHost| &h.default) as fn(&PoolHost) -> &cpupolicy_policy::CpuPolicy),
        (&pool.acceptance, |h: &PoolHost| &h.max),
    ] {
        for loss in &levelled.lost {
            if let LossCause::LackedBy(blamed) = &loss.cause {
                let lacking: Vec<usize> =
                    (0..hosts.len()).filter(|&i| !of_role(&hosts[i]).has_feature(loss.feature)).collect();
                assert_eq!(blamed, &lacking, "{:?}", loss.feature);
            }
        }
    }
    for host in &hosts {
        let default = check_migration(&pool.default.policy, host);
        assert!(default.is_compatible(), "{} refuses the pool default: {:?}", host.name, default.mismatches);
        let acceptance = check_migration(&pool.acceptance.policy, host);
        assert!(acceptance.is_compatible(), "{} refuses the acceptance policy: {:?}", host.name, acceptance.mismatches);
    }
});
