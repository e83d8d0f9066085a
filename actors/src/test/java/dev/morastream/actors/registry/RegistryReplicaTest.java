package dev.morastream.actors.registry;

import static dev.morastream.actors.registry.AdapterRegistryTest.adapter;
import static dev.morastream.actors.registry.AdapterRegistryTest.content;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.streams.state.InMemoryStateStore;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A trainer node's registry exported to the state store, fetched by a serving node into a registry of its own. */
class RegistryReplicaTest {
    @TempDir
    Path tmp;

    @Test
    void aVersionExportedOnOneNodeIsFetchedIntoAnotherNodesRegistryUnderItsOwnNumber() throws Exception {
        InMemoryStateStore store = new InMemoryStateStore();
        RegistryReplica replica = new RegistryReplica(store);
        AdapterRegistry trainer = new AdapterRegistry(tmp.resolve("a"), 5);
        AdapterRegistry serving = new AdapterRegistry(tmp.resolve("b"), 5);
        trainer.publish("med", adapter(tmp.resolve("x1"), "one"), Map.of(), Map.of()); // v1, never exported
        AdapterRegistry.Entry v2 = trainer.publish("med", adapter(tmp.resolve("x2"), "two"), Map.of("char_acc", 0.7), Map.of("step", "20"));
        replica.export(trainer, v2);

        AdapterRegistry.Entry got = replica.fetch(serving, v2.version(), Duration.ZERO).orElseThrow();
        assertEquals(v2.version(), got.version());
        assertEquals("two", content(got.dir()));
        assertEquals(Map.of("char_acc", 0.7), got.scores());
        assertEquals(Map.of("step", "20"), got.info());
        assertEquals(v2.created(), got.created());
        // a later version published on the serving node never reuses the adopted number
        assertEquals(3, serving.publish("med", adapter(tmp.resolve("x3"), "three"), Map.of(), Map.of()).version().number());
        // fetched again: nothing to do
        assertEquals(got.dir(), replica.fetch(serving, v2.version(), Duration.ZERO).orElseThrow().dir());
        assertTrue(replica.fetch(serving, AdapterVersion.parse("med@v1"), Duration.ofMillis(100)).isEmpty(), "never exported");
        try (var s = Files.list(tmp.resolve("b"))) {
            assertFalse(s.anyMatch(p -> p.getFileName().toString().startsWith(".fetch")), "no leftovers of the fetch");
        }
    }

    @Test
    void aNodeTakingADomainOverCatchesUpEveryVersionAndTheAliasSoNoNameIsReused() throws Exception {
        InMemoryStateStore store = new InMemoryStateStore();
        RegistryReplica replica = new RegistryReplica(store);
        AdapterRegistry before = new AdapterRegistry(tmp.resolve("a"), 5);
        for (int i = 1; i <= 3; i++) {
            replica.export(before, before.publish("med", adapter(tmp.resolve("x" + i), "n" + i), Map.of(), Map.of()));
        }
        before.setAlias(AdapterVersion.parse("med@v2"));
        replica.alias(AdapterVersion.parse("med@v2"));

        AdapterRegistry next = new AdapterRegistry(tmp.resolve("b"), 5);
        assertEquals(java.util.List.of(AdapterVersion.parse("med@v1"), AdapterVersion.parse("med@v2"), AdapterVersion.parse("med@v3")),
                replica.catchUp(next, "med"));
        assertEquals(java.util.Optional.of(AdapterVersion.parse("med@v2")), next.alias("med"), "the store's alias");
        assertEquals("n3", content(next.get(AdapterVersion.parse("med@v3")).orElseThrow().dir()));
        assertEquals(4, next.publish("med", adapter(tmp.resolve("x4"), "n4"), Map.of(), Map.of()).version().number(),
                "the next version is past every version of the lineage, not a second v1");
        assertEquals(java.util.List.of(), replica.catchUp(next, "med"), "nothing left to catch up");
        assertEquals(java.util.List.of(), replica.catchUp(next, "other"), "a domain the store does not have");
    }

    @Test
    void aliasesAreSharedAndPrunedVersionsLeaveTheStoreButNeverTheAliasedOne() throws Exception {
        InMemoryStateStore store = new InMemoryStateStore();
        RegistryReplica replica = new RegistryReplica(store);
        AdapterRegistry trainer = new AdapterRegistry(tmp.resolve("a"), 2);
        AdapterRegistry.Entry v1 = trainer.publish("med", adapter(tmp.resolve("x1"), "one"), Map.of(), Map.of());
        replica.export(trainer, v1);
        trainer.setAlias(v1.version());
        replica.alias(v1.version());
        for (int i = 2; i <= 4; i++) {
            replica.export(trainer, trainer.publish("med", adapter(tmp.resolve("x" + i), "n" + i), Map.of(), Map.of()));
        }
        // the registry keeps 2 versions (the aliased v1 among them); the store keeps what the registry keeps
        Set<String> stored = new java.util.TreeSet<>();
        store.keys("registry/med/").forEach(k -> stored.add(k.split("/")[2]));
        Set<String> kept = new java.util.TreeSet<>();
        trainer.versions("med").forEach(e -> kept.add("v" + e.version().number()));
        assertEquals(kept, stored);
        assertTrue(stored.contains("v1"), "the aliased version stays");
        assertEquals(Map.of("med", v1.version()), replica.aliases());
        assertEquals(Optional.of(v1.version()), replica.aliased("med"));
    }

    @Test
    void anIncompleteVersionInTheStoreIsAnErrorNotAHalfVersion() throws Exception {
        InMemoryStateStore store = new InMemoryStateStore();
        RegistryReplica replica = new RegistryReplica(store);
        AdapterRegistry trainer = new AdapterRegistry(tmp.resolve("a"), 5);
        AdapterRegistry.Entry v1 = trainer.publish("med", adapter(tmp.resolve("x1"), "one"), Map.of(), Map.of());
        replica.export(trainer, v1);
        store.delete("registry/med/v1/version.json");
        AdapterRegistry serving = new AdapterRegistry(tmp.resolve("b"), 5);
        assertTrue(replica.fetch(serving, v1.version(), Duration.ofMillis(100)).isEmpty(), "no version.json: not there (yet)");
        store.put("registry/med/v1/version.json", "{not json".getBytes());
        assertThrows(Exception.class, () -> replica.fetch(serving, v1.version(), Duration.ZERO));
        assertTrue(serving.get(v1.version()).isEmpty(), "nothing half-adopted");
        assertEquals(List.of(), serving.versions("med"));
    }
}
