//! Deterministic randomness for the workloads: SplitMix64, a table-based Zipf sampler
//! and a scatter permutation (so hot Zipf ranks are not neighbours in memory).

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, statistically fine for workloads.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6A09_E667_F3BC_C909)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is < n / 2^64).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `k` distinct values of `0..n` (partial Fisher–Yates over a reusable permutation
    /// `perm`, which must hold a permutation of `0..n` and stays one).
    pub fn distinct<'a>(&mut self, perm: &'a mut [u32], k: usize) -> &'a [u32] {
        let n = perm.len();
        let k = k.min(n);
        for i in 0..k {
            let j = i + self.below(n - i);
            perm.swap(i, j);
        }
        &perm[..k]
    }
}

/// Zipf(s) over ranks `0..n` (rank 0 the most frequent), by inverse CDF over a table.
/// Building is O(n); sampling is a binary search. Used only outside timed regions.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += (k as f64).powf(-s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// A bijection of `0..n` (an affine map with a multiplier coprime to `n`) that spreads
/// neighbouring ranks over the whole range.
pub struct Scatter {
    n: u64,
    a: u64,
    b: u64,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Scatter {
    pub fn new(n: usize) -> Scatter {
        let n = n.max(1) as u64;
        let mut a = (0x9E37_79B9_7F4A_7C15u64 % n).max(1);
        while gcd(a, n) != 1 {
            a += 1;
        }
        Scatter { n, a, b: n / 3 }
    }

    pub fn map(&self, i: usize) -> usize {
        ((i as u128 * self.a as u128 + self.b as u128) % self.n as u128) as usize
    }
}
