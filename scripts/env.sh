# Sourced by the scripts: ring's C code needs clang to target wasm.
export CC_wasm32_wasip1=clang AR_wasm32_wasip1=llvm-ar
export CC_wasm32_unknown_unknown=clang AR_wasm32_unknown_unknown=llvm-ar
