//! The order in which a call tries a trunk's targets.

use rand::Rng;

use crate::config::Target;

/// The order in which a call tries `targets`, as indexes into the slice.
///
/// Targets are grouped by priority, lowest first. Within a priority they are
/// drawn by weight, without replacement, as RFC 2782 describes for SRV records:
/// a target of weight `w` comes first with probability `w / sum`; weight-0
/// targets come after the weighted ones unless all are weight 0 (then they are
/// drawn with equal chances).
///
/// `up(i)` tells whether target `i` is up. Down targets are left out; if that
/// leaves nothing and `try_when_all_down` is set, every target is used in the
/// same order (a health monitor may be wrong; trying beats failing). The
/// result is empty only when `targets` is, or when all are down and
/// `try_when_all_down` is `false`.
///
/// ```
/// use rand::{SeedableRng, rngs::StdRng};
/// use siplink_trunk::{Target, Transport, target_order};
/// let targets = [
///     Target::new("192.0.2.1", 5060, Transport::Udp).with_priority(20),
///     Target::new("192.0.2.2", 5060, Transport::Udp).with_priority(10),
/// ];
/// let order = target_order(&targets, |_| true, true, &mut StdRng::seed_from_u64(7));
/// assert_eq!(order, [1, 0]);
/// let order = target_order(&targets, |i| i != 1, true, &mut StdRng::seed_from_u64(7));
/// assert_eq!(order, [0]);
/// ```
pub fn target_order(
    targets: &[Target],
    up: impl Fn(usize) -> bool,
    try_when_all_down: bool,
    rng: &mut impl Rng,
) -> Vec<usize> {
    let mut candidates: Vec<usize> = (0..targets.len()).filter(|&i| up(i)).collect();
    if candidates.is_empty() && try_when_all_down {
        candidates = (0..targets.len()).collect();
    }
    // Stable: equal priorities keep configuration order before the draw.
    candidates.sort_by_key(|&i| targets[i].priority);
    let mut out = Vec::with_capacity(candidates.len());
    let mut start = 0;
    while start < candidates.len() {
        let prio = targets[candidates[start]].priority;
        let end = candidates[start..]
            .iter()
            .position(|&i| targets[i].priority != prio)
            .map_or(candidates.len(), |k| start + k);
        draw_by_weight(targets, &candidates[start..end], rng, &mut out);
        start = end;
    }
    out
}

/// Appends `group` to `out` in a weighted random order.
fn draw_by_weight(targets: &[Target], group: &[usize], rng: &mut impl Rng, out: &mut Vec<usize>) {
    let (mut weighted, mut zero): (Vec<usize>, Vec<usize>) =
        group.iter().partition(|&&i| targets[i].weight > 0);
    while !weighted.is_empty() {
        let total: u32 = weighted.iter().map(|&i| u32::from(targets[i].weight)).sum();
        let mut r = rng.random_range(0..total);
        let mut pick = 0;
        for (k, &i) in weighted.iter().enumerate() {
            let w = u32::from(targets[i].weight);
            if r < w {
                pick = k;
                break;
            }
            r -= w;
        }
        out.push(weighted.remove(pick));
    }
    while !zero.is_empty() {
        let k = rng.random_range(0..zero.len());
        out.push(zero.remove(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Transport;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn t(prio: u16, weight: u16) -> Target {
        Target::new("192.0.2.1", 5060, Transport::Udp)
            .with_priority(prio)
            .with_weight(weight)
    }

    #[test]
    fn priority_first_then_everything() {
        let targets = [t(30, 1), t(10, 1), t(20, 1), t(10, 1)];
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..50 {
            let o = target_order(&targets, |_| true, true, &mut rng);
            assert_eq!(o.len(), 4);
            let mut head = o[..2].to_vec();
            head.sort();
            assert_eq!(head, [1, 3]);
            assert_eq!(&o[2..], &[2, 0]);
        }
    }

    #[test]
    fn weights_share_first_place() {
        let targets = [t(10, 75), t(10, 25)];
        let mut rng = StdRng::seed_from_u64(42);
        let firsts = (0..4000)
            .filter(|_| target_order(&targets, |_| true, true, &mut rng)[0] == 0)
            .count();
        // 3000 expected; allow a wide margin for the fixed seed.
        assert!((2750..3250).contains(&firsts), "{firsts}");
    }

    #[test]
    fn zero_weight_comes_last() {
        let targets = [t(10, 0), t(10, 5), t(10, 0)];
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..50 {
            let o = target_order(&targets, |_| true, true, &mut rng);
            assert_eq!(o[0], 1);
            assert_eq!(o.len(), 3);
        }
    }

    #[test]
    fn down_targets_skipped_unless_all_down() {
        let targets = [t(10, 1), t(20, 1), t(30, 1)];
        let mut rng = StdRng::seed_from_u64(9);
        assert_eq!(target_order(&targets, |i| i != 0, true, &mut rng), [1, 2]);
        assert_eq!(target_order(&targets, |_| false, true, &mut rng), [0, 1, 2]);
        assert!(target_order(&targets, |_| false, false, &mut rng).is_empty());
        assert!(target_order(&[], |_| true, true, &mut rng).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn order_is_a_permutation_sorted_by_priority(
            spec in proptest::collection::vec((0u16..4, 0u16..5), 0..12),
            seed in proptest::prelude::any::<u64>(),
        ) {
            let targets: Vec<Target> = spec.iter().map(|&(p, w)| t(p, w)).collect();
            let mut rng = StdRng::seed_from_u64(seed);
            let o = target_order(&targets, |_| true, true, &mut rng);
            let mut sorted = o.clone();
            sorted.sort();
            proptest::prop_assert_eq!(sorted, (0..targets.len()).collect::<Vec<_>>());
            for w in o.windows(2) {
                proptest::prop_assert!(targets[w[0]].priority <= targets[w[1]].priority);
            }
        }
    }
}
