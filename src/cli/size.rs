//! Sizes on the command line, and the one the machine suggests: `--send-buffer auto` reads a
//! core's L2 cache size from sysfs here, so that the stream module only applies a size it is
//! given.

use crate::stream::socket::SendBuffer;

/// The smallest and largest request `auto` makes.
const AUTO_MIN: usize = 256 << 10;
const AUTO_MAX: usize = 1 << 20;
/// What `auto` asks for where the cache size cannot be read.
const AUTO_FALLBACK: usize = 512 << 10;

/// `--send-buffer auto`: half of one core's L2 cache (Linux doubles the request, so the buffer
/// the kernel keeps is about the L2's size), between 256 KiB and 1 MiB; 512 KiB where sysfs does
/// not say; for consumers on this machine only (loopback peers). Measured on llvmpipe (docs/performance.md): with the kernel's autotuned buffer a
/// consumer on the same machine spent a third more CPU per 1080p frame.
pub fn auto_send_buffer() -> SendBuffer {
    let l2 = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cache/index2/size")
        .ok()
        .and_then(|text| parse_cache_size(&text));
    SendBuffer::Loopback(match l2 {
        Some(bytes) => (bytes / 2).clamp(AUTO_MIN, AUTO_MAX),
        None => AUTO_FALLBACK,
    })
}

/// Parses a size in bytes: ASCII digits with an optional `K`/`k` (KiB) or `M`/`m` (MiB) suffix,
/// as sysfs writes cache sizes and as `--send-buffer` takes them; `None` if it is not one or
/// overflows.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, scale) = match text.strip_suffix(['K', 'k']) {
        Some(digits) => (digits, 1 << 10),
        None => match text.strip_suffix(['M', 'm']) {
            Some(digits) => (digits, 1 << 20),
            None => (text, 1),
        },
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// Parses sysfs's cache size ("1024K\n", "32M", "512"); a size of 0 is no size.
fn parse_cache_size(text: &str) -> Option<usize> {
    parse_size(text.trim())
        .filter(|&bytes| bytes > 0)
        .and_then(|bytes| usize::try_from(bytes).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_parse_as_sysfs_writes_them() {
        assert_eq!(parse_cache_size("1024K\n"), Some(1 << 20));
        assert_eq!(parse_cache_size("32M"), Some(32 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        for bad in ["", "K", "0K", "12Q", "-1K"] {
            assert_eq!(parse_cache_size(bad), None, "{bad:?}");
        }
        let SendBuffer::Loopback(auto) = auto_send_buffer() else {
            panic!("auto is a size");
        };
        assert!((AUTO_MIN..=AUTO_MAX).contains(&auto));
    }
}
