//! Element-wise loops compiled for the widest vector unit the CPU has.
//!
//! The crate is built for the baseline x86-64 (SSE2, 4 lanes), so a plain loop such as the
//! Adam update vectorises 4 wide whatever the CPU. [`widest`] runs a closure inside a function
//! compiled with AVX-512 (or AVX2) enabled, chosen at run time; the closure is inlined there
//! and its loops vectorise 16 (or 8) wide. Results do not change: Rust never contracts a
//! multiply and an add into a fused multiply-add or reorders floating-point sums, and
//! +, −, ×, ÷ and √ are exactly rounded at any width, so every element gets the same bits.

use std::sync::OnceLock;

#[derive(Clone, Copy, PartialEq)]
enum Width {
    Avx512,
    Avx2,
    Baseline,
}

fn width() -> Width {
    static WIDTH: OnceLock<Width> = OnceLock::new();
    *WIDTH.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Width::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Width::Avx2;
            }
        }
        Width::Baseline
    })
}

/// Runs `f`, compiled for the widest vector instructions this CPU has.
#[inline(always)]
pub fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    match width() {
        // SAFETY: the CPU has the features these functions are compiled for.
        Width::Avx512 => return unsafe { with_avx512(f) },
        Width::Avx2 => return unsafe { with_avx2(f) },
        Width::Baseline => {}
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,avx")]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
