package dev.morastream.ops.cli;

import ai.djl.ndarray.NDManager;
import dev.morastream.models.eval.Perplexity;
import dev.morastream.models.eval.TaskSet;
import dev.morastream.models.generate.GenerationConfig;
import dev.morastream.models.generate.Generator;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;

/**
 * The main job. The streaming system (Kafka ingestion, trainer, evaluator, supervisor and serving
 * actors, HTTP API) is built by later issues; until then this loads the base model and reports
 * what it knows: held-out perplexity, downstream task scores and a sample completion.
 */
@Command(name = "run", mixinStandardHelpOptions = true,
        description = {"Run the main job (today: evaluate the base model; the streaming job is not built yet).",
            "Loads the base model and reports its held-out perplexity, downstream task scores and a sample answer."})
public final class RunCommand implements Callable<Integer> {
    @Mixin ModelOptions modelOptions;

    @Override
    public Integer call() throws Exception {
        Path dir = modelOptions.dir();
        System.err.println("loading base model " + dir);
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.load(dir, root);
                TextTokenizer tok = TextTokenizer.forModel(dir, model.config())) {
            System.out.printf(Locale.ROOT, "model: %,d parameters, %d layers, context %d, tokenizer %s, device %s%n",
                    model.parameterCount(), model.config().numHiddenLayers(), model.config().maxPositionEmbeddings(),
                    tok.name(), model.device());
            Path held = dir.resolve("eval").resolve("heldout.txt");
            if (Files.isRegularFile(held)) {
                Perplexity.Result r = Perplexity.evaluate(model, tok, Files.readString(held, StandardCharsets.UTF_8),
                        model.config().maxPositionEmbeddings());
                System.out.printf(Locale.ROOT, "held-out set: %d tokens, loss %.4f nats/token, perplexity %.3f%n",
                        r.tokens(), r.loss(), r.perplexity());
            }
            Generator gen = new Generator(model, tok);
            Path tasks = dir.resolve("eval").resolve("tasks.jsonl");
            if (Files.isRegularFile(tasks)) {
                List<TaskSet.Item> items = TaskSet.load(tasks);
                java.util.Map<String, List<TaskSet.Item>> bySet = new java.util.LinkedHashMap<>();
                items.forEach(i -> bySet.computeIfAbsent(i.set(), k -> new java.util.ArrayList<>()).add(i));
                List<TaskSet.Item> sample = bySet.values().stream()
                        .flatMap(l -> l.subList(0, Math.min(l.size(), 20)).stream()).toList(); // up to 20 per set
                for (TaskSet.Score s : TaskSet.evaluate(gen, sample, 16)) {
                    System.out.printf(Locale.ROOT, "tasks %-12s %3d items  exact match %.2f  char accuracy %.2f%n",
                            s.set(), s.items(), s.exactMatch(), s.charAccuracy());
                }
                TaskSet.Item first = items.get(0);
                System.out.print("sample: " + first.prompt());
                gen.generate(first.prompt(), new GenerationConfig(16, 0, 1, 0, List.of("\n"), true), s -> {
                    System.out.print(s);
                    System.out.flush();
                });
                System.out.println();
            }
            System.out.println("the streaming job (Kafka -> MoRA trainers -> evaluator -> serving API) is not built yet");
        }
        return 0;
    }
}
