fn main() {
    std::process::exit(temu_sync::exit::OK);
}
