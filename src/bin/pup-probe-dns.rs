fn main() {
    pup::probe::main::<pup::probe::dns::Dns>()
}
