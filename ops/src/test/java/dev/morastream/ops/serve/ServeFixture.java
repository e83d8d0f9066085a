package dev.morastream.ops.serve;

import ai.djl.ndarray.NDManager;
import dev.morastream.actors.registry.AdapterRegistry;
import dev.morastream.actors.registry.AdapterVersion;
import dev.morastream.models.adapters.AdapterFiles;
import dev.morastream.models.adapters.AdapterSet;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** The shipped tiny model and a registry with versions of one domain whose adapters are random (so outputs differ). */
final class ServeFixture implements AutoCloseable {
    static final Path TINY = Path.of("..", "base-models", "tiny").toAbsolutePath().normalize();
    static final String DOMAIN = "facts";
    static final String PROMPT = "Q: What is the capital of Velorania?\nA:";

    final NDManager root = NDManager.newBaseManager();
    final LlamaModel model = LlamaModel.load(TINY, root);
    final TextTokenizer tokenizer = TextTokenizer.forModel(TINY, model.config());
    final AdapterRegistry registry;
    final List<AdapterVersion> versions = new ArrayList<>();

    ServeFixture(Path dir, int nVersions) throws IOException {
        registry = new AdapterRegistry(dir.resolve("registry"), 10);
        for (int i = 0; i < nVersions; i++) {
            Path a = dir.resolve("adapter" + i);
            try (AdapterSet set = AdapterSet.create(model, AdapterSpec.lora(4, 8).withSeed(i)).randomize(100 + i, 0.2)) {
                AdapterFiles.save(set, a, "tiny");
            }
            versions.add(registry.publish(DOMAIN, a, Map.of("memorisation", 0.1 * i), Map.of()).version());
            Files.walk(a).sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
        if (nVersions > 0) {
            registry.setAlias(versions.get(0));
        }
    }

    @Override
    public void close() {
        model.close();
        root.close();
    }
}
