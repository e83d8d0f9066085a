package dev.morastream.actors.registry;

import static dev.morastream.actors.registry.AdapterRegistryTest.adapter;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Each kind of damage, made on a real registry directory: opening it repairs around it, says what it did, and never throws. */
class DamagedRegistryTest {
    static AdapterRegistry withVersions(Path root, String domain, int n) throws Exception {
        AdapterRegistry reg = new AdapterRegistry(root, 10);
        for (int i = 0; i < n; i++) {
            reg.publish(domain, adapter(root.resolveSibling("src-" + domain + i), "c" + i), Map.of(), Map.of());
        }
        return reg;
    }

    static List<String> names(AdapterRegistry reg, String domain) throws Exception {
        return reg.versions(domain).stream().map(e -> e.version().toString()).toList();
    }

    static Set<String> quarantined(Path root, String domain) throws Exception {
        Path q = root.resolve(domain).resolve(AdapterRegistry.QUARANTINE);
        if (!Files.isDirectory(q)) {
            return Set.of();
        }
        try (Stream<Path> s = Files.list(q)) {
            return s.map(p -> p.getFileName().toString()).collect(Collectors.toSet());
        }
    }

    static Set<AdapterRegistry.Repair> repairs(AdapterRegistry reg) {
        return reg.recovery().stream().map(AdapterRegistry.Damage::repair).collect(Collectors.toSet());
    }

    @Test
    void damagedVersionsAreQuarantinedAndSkippedAndNamesAreNeverReused(@TempDir Path tmp) throws Exception {
        Path root = tmp.resolve("registry");
        AdapterRegistry first = withVersions(root, "news", 5);
        first.setAlias(AdapterVersion.parse("news@v2"));
        Path d = root.resolve("news");
        // v1: corrupt safetensors (torn copy); v3: a folder without version.json (a crash in the middle of pruning);
        // v4: version.json that is not JSON; v5 stays sound
        Files.write(d.resolve("v1").resolve("adapter_model.safetensors"), new byte[] {1, 2, 3, 4, 5, 6, 7, 8, 9});
        Files.delete(d.resolve("v3").resolve("version.json"));
        Files.writeString(d.resolve("v4").resolve("version.json"), "{\"version\": \"news@v4\", \"crea");
        Files.createDirectories(d.resolve("lost+found"));
        Files.createDirectories(root.resolve("lost+found"));
        Files.createDirectories(d.resolve(".v9.tmp-123")); // a publish that never finished, an hour ago
        Files.setLastModifiedTime(d.resolve(".v9.tmp-123"), java.nio.file.attribute.FileTime.from(java.time.Instant.now().minusSeconds(3600)));
        Files.createDirectories(d.resolve(".v10.tmp-456")); // perhaps in progress in another process: left alone
        Files.delete(d.resolve("counter"));

        AdapterRegistry reg = new AdapterRegistry(root, 10);
        assertEquals(List.of("news@v2", "news@v5"), names(reg, "news"));
        assertEquals(Set.of("v1", "v3", "v4"), quarantined(root, "news"));
        assertEquals(List.of("news"), reg.domains(), "lost+found is not a domain");
        assertTrue(Files.isDirectory(d.resolve("lost+found")), "what is not registry state is left alone");
        assertFalse(Files.exists(d.resolve(".v9.tmp-123")));
        assertTrue(Files.exists(d.resolve(".v10.tmp-456")));
        assertEquals(Set.of(AdapterRegistry.Repair.QUARANTINED, AdapterRegistry.Repair.IGNORED, AdapterRegistry.Repair.LEFTOVER_REMOVED,
                AdapterRegistry.Repair.COUNTER_REPAIRED), repairs(reg));
        assertEquals(3, reg.recovery().stream().filter(x -> x.repair() == AdapterRegistry.Repair.QUARANTINED).count());
        assertEquals(AdapterVersion.parse("news@v2"), reg.alias("news").orElseThrow(), "a sound alias stays");
        assertTrue(reg.get(AdapterVersion.parse("news@v3")).isEmpty());
        // the counter was lost: rebuilt from the highest number seen, so v1..v5 are never handed out again
        assertEquals(6, reg.publish("news", adapter(tmp.resolve("next"), "n"), Map.of(), Map.of()).version().number());
        assertTrue(new AdapterRegistry(root, 10).recovery().stream().allMatch(x -> x.repair() == AdapterRegistry.Repair.IGNORED),
                "a repaired registry opens clean (only lost+found is reported)");
    }

    @Test
    void anAliasToAMissingOrDamagedVersionFallsBackToTheNewestValidOne(@TempDir Path tmp) throws Exception {
        Path root = tmp.resolve("registry");
        AdapterRegistry first = withVersions(root, "news", 3);
        first.setAlias(AdapterVersion.parse("news@v3"));
        Path d = root.resolve("news");
        Files.writeString(d.resolve("v3").resolve("adapter_config.json"), "{ torn");
        AdapterRegistry reg = new AdapterRegistry(root, 10);
        assertEquals(AdapterVersion.parse("news@v2"), reg.alias("news").orElseThrow());
        assertTrue(repairs(reg).contains(AdapterRegistry.Repair.ALIAS_FALLBACK));

        // an alias naming a version that is gone
        Files.writeString(d.resolve("alias.json"), "{\"version\": \"news@v42\"}");
        assertEquals(AdapterVersion.parse("news@v2"), new AdapterRegistry(root, 10).alias("news").orElseThrow());
        // found at run time too, not only at open
        Files.writeString(d.resolve("alias.json"), "{\"version\": \"news@v41\"}");
        assertEquals(AdapterVersion.parse("news@v2"), reg.alias("news").orElseThrow());
    }

    @Test
    void aCorruptAliasFallsBackToTheNewestValidVersionOrTheBase(@TempDir Path tmp) throws Exception {
        Path root = tmp.resolve("registry");
        AdapterRegistry first = withVersions(root, "news", 2);
        first.setAlias(AdapterVersion.parse("news@v1"));
        Path d = root.resolve("news");
        Files.write(d.resolve("alias.json"), new byte[] {'{', 0, (byte) 0xff, '"'});
        AdapterRegistry reg = new AdapterRegistry(root, 10);
        assertEquals(AdapterVersion.parse("news@v2"), reg.alias("news").orElseThrow());
        assertTrue(quarantined(root, "news").stream().anyMatch(n -> n.startsWith("alias.json-")), quarantined(root, "news").toString());

        // nothing valid left: the base model serves (no alias), the registry still opens
        Files.writeString(d.resolve("alias.json"), "[]");
        Files.delete(d.resolve("v1").resolve("version.json"));
        Files.delete(d.resolve("v2").resolve("version.json"));
        AdapterRegistry bare = new AdapterRegistry(root, 10);
        assertTrue(bare.alias("news").isEmpty());
        assertEquals(List.of(), bare.versions("news"));
        assertFalse(Files.exists(d.resolve("alias.json")));
    }

    @Test
    void aVersionDamagedAfterOpenIsQuarantinedWhenListedInsteadOfFailingTheListing(@TempDir Path tmp) throws Exception {
        Path root = tmp.resolve("registry");
        AdapterRegistry reg = withVersions(root, "news", 2);
        Files.delete(root.resolve("news").resolve("v1").resolve("version.json"));
        assertEquals(List.of("news@v2"), names(reg, "news"));
        assertEquals(Set.of("v1"), quarantined(root, "news"));
    }

    @Test
    void pruningRenamesAVersionAwayBeforeDeletingIt(@TempDir Path tmp) throws Exception {
        Path root = tmp.resolve("registry");
        AdapterRegistry reg = new AdapterRegistry(root, 1);
        for (int i = 0; i < 3; i++) {
            reg.publish("news", adapter(tmp.resolve("s" + i), "x" + i), Map.of(), Map.of());
        }
        try (Stream<Path> s = Files.list(root.resolve("news"))) {
            assertEquals(Set.of("v3", "counter"), s.map(p -> p.getFileName().toString()).collect(Collectors.toSet()));
        }
    }
}
