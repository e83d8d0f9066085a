package dev.morastream.models.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import dev.morastream.models.corpus.SyntheticCorpus;
import dev.morastream.models.corpus.SyntheticWorld;
import dev.morastream.models.llama.LlamaConfig;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.ByteTokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;

class PretrainerTest {
    private static final SyntheticCorpus CORPUS = new SyntheticCorpus(SyntheticWorld.base());

    /** Resident set size of this process in MB, from /proc. */
    static double rssMb() throws IOException {
        for (String l : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (l.startsWith("VmRSS:")) {
                return Long.parseLong(l.replaceAll("[^0-9]", "")) / 1024.0;
            }
        }
        throw new IllegalStateException("no VmRSS");
    }

    @Test
    void nativeMemoryAndLiveArraysStayFlatOverHundredsOfSteps() throws IOException {
        // 4 layers of width 128: a leaked step graph would cost several MB per step.
        LlamaConfig c = new LlamaConfig(128, 256, 4, 4, 2, 32, ByteTokenizer.VOCAB, 128, 1e-5, 10000, null, true,
                false, false, ByteTokenizer.BOS, List.of(ByteTokenizer.EOS));
        int steps = Integer.getInteger("memtest.steps", 300);
        Map<Integer, Double> rss = new TreeMap<>();
        Map<Integer, Integer> arrays = new TreeMap<>();
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.random(c, 1, root)) {
            PretrainConfig pc = new PretrainConfig(steps, 8, 64, 2e-3, 10, 0.1, 0.1, 1.0, 5, 0, 10);
            List<Double> losses = new ArrayList<>();
            new Pretrainer(model, new ByteTokenizer(), CORPUS, pc).run(p -> {
                losses.add(p.loss());
                try {
                    rss.put(p.step(), rssMb());
                } catch (IOException e) {
                    throw new IllegalStateException(e);
                }
                arrays.put(p.step(), countArrays(model.manager()));
                if (p.step() % 50 == 0) {
                    Runtime rt = Runtime.getRuntime();
                    System.out.printf("step %d rss %.0f MB heap committed %.0f MB used %.0f MB%n", p.step(), rss.get(p.step()),
                            rt.totalMemory() / 1e6, (rt.totalMemory() - rt.freeMemory()) / 1e6);
                }
            });
            double growth = rss.get(steps) - rss.get(100);
            System.out.printf("RSS at step 100: %.0f MB, at step %d: %.0f MB (growth %.1f MB); live arrays %s%n",
                    rss.get(100), steps, rss.get(steps), growth, arrays.values());
            // An un-scoped step leaks its whole graph (~10 MB per step at this size): 200 steps would add ~2 GB.
            assertTrue(growth < 64, "native memory grew by " + growth + " MB from step 100 to step " + steps);
            assertEquals(arrays.get(20), arrays.get(steps), "arrays alive in the model's manager changed: " + arrays);
            assertTrue(losses.get(losses.size() - 1) < 0.6 * losses.get(0), "loss did not fall: " + losses);
        }
    }

    private static int countArrays(NDManager m) {
        return m.getManagedArrays().size();
    }
}
