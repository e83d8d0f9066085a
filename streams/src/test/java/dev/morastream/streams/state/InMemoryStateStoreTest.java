package dev.morastream.streams.state;

class InMemoryStateStoreTest extends StateStoreContract {
    @Override
    StateStore openStore() {
        return new InMemoryStateStore();
    }

    @Override
    boolean persistent() {
        return false;
    }
}
