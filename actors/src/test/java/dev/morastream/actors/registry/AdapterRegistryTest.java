package dev.morastream.actors.registry;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.morastream.models.checkpoint.DType;
import dev.morastream.models.checkpoint.Safetensors;
import dev.morastream.models.checkpoint.Tensor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AdapterRegistryTest {
    /** An adapter folder whose tensor file holds one tensor of value {@code content.length()} (a real safetensors file). */
    static Path adapter(Path dir, String content) throws Exception {
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("adapter_config.json"), "{\"peft_type\": \"LORA\"}");
        Safetensors.write(dir.resolve("adapter_model.safetensors"), List.of(new Tensor("w", new long[] {1}, new float[] {content.length()})),
                DType.F32, Map.of("content", content));
        return dir;
    }

    static String content(Path versionDir) {
        try (Safetensors.Reader r = Safetensors.open(versionDir.resolve("adapter_model.safetensors"))) {
            return r.metadata().get("content");
        }
    }

    @Test
    void versionsAreImmutableNumberedAndNeverReused(@TempDir Path tmp) throws Exception {
        AdapterRegistry reg = new AdapterRegistry(tmp.resolve("reg"), 2);
        Path src = adapter(tmp.resolve("a"), "one");
        AdapterRegistry.Entry v1 = reg.publish("medicine", src, Map.of("char_acc", 0.5), Map.of("step", "10"));
        adapter(src, "two"); // the source changes afterwards
        AdapterRegistry.Entry v2 = reg.publish("medicine", src, Map.of("char_acc", 0.6), Map.of());
        assertEquals("medicine@v1", v1.version().toString());
        assertEquals("medicine@v2", v2.version().toString());
        assertEquals("one", content(v1.dir()), "v1 must not change");
        reg.setAlias(v2.version());
        reg.publish("medicine", src, Map.of(), Map.of());
        reg.publish("medicine", src, Map.of(), Map.of()); // keep 2: v1 and v3 go, v2 stays (aliased)
        List<String> names = reg.versions("medicine").stream().map(e -> e.version().toString()).toList();
        assertEquals(List.of("medicine@v2", "medicine@v4"), names);
        // reopen: the alias and the counter survive; the next name is v5, never a reused v1/v3
        AdapterRegistry again = new AdapterRegistry(tmp.resolve("reg"), 2);
        assertEquals(AdapterVersion.parse("medicine@v2"), again.alias("medicine").orElseThrow());
        assertEquals(5, again.publish("medicine", src, Map.of(), Map.of()).version().number());
        assertEquals(0.6, again.get(AdapterVersion.parse("medicine@v2")).orElseThrow().scores().get("char_acc"));
        assertTrue(again.get(AdapterVersion.parse("medicine@v1")).isEmpty());
    }

    @Test
    void badNamesAndMissingVersionsAreClearErrors(@TempDir Path tmp) throws Exception {
        AdapterRegistry reg = new AdapterRegistry(tmp, 3);
        assertThrows(IllegalArgumentException.class, () -> AdapterVersion.parse("medicine@3"));
        assertThrows(IllegalArgumentException.class, () -> reg.publish("../etc", adapter(tmp.resolve("x"), "1"), Map.of(), Map.of()));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> reg.setAlias(AdapterVersion.parse("law@v9")));
        assertTrue(e.getMessage().contains("law@v9"), e.getMessage());
        assertTrue(reg.alias("law").isEmpty());
    }
}
