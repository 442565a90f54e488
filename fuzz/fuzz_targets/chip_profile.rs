#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    persodesk_fuzz::entries::chip_profile(data);
});
