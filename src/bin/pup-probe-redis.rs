fn main() {
    pup::probe::main::<pup::probe::redis::Redis>()
}
