package dev.morastream.ops.cli;

import ai.djl.ndarray.NDManager;
import dev.morastream.models.eval.Perplexity;
import dev.morastream.models.eval.TaskSet;
import dev.morastream.models.generate.Generator;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** Quality measurements of a model. */
@Command(name = "eval", mixinStandardHelpOptions = true, description = "Measure a model's quality.",
        subcommands = {EvalCommand.PerplexityCommand.class, EvalCommand.TasksCommand.class})
public final class EvalCommand implements Runnable {
    @CommandLine.Spec CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.err);
    }

    /** Mean next-token loss and perplexity of a text file. */
    @Command(name = "perplexity", mixinStandardHelpOptions = true,
            description = {"Mean next-token cross-entropy (nats/token) and perplexity of a text file.",
                "BOS prepended when the tokenizer has one, windows of at most the model's context."})
    public static final class PerplexityCommand implements Callable<Integer> {
        @Mixin ModelOptions modelOptions;

    @Mixin AdapterOption adapterOption;

        @Option(names = "--file", required = true, paramLabel = "TEXTFILE", description = "UTF-8 text file.")
        Path file;

        @Option(names = "--window", description = "Predictions per window (default: the model's context).")
        Integer window;

        @Option(names = "--json", description = "Print one JSON object.")
        boolean json;

        @Override
        public Integer call() throws Exception {
            if (!Files.isRegularFile(file)) {
                throw new IllegalArgumentException("no such file: " + file);
            }
            String text = Files.readString(file, StandardCharsets.UTF_8);
            long t0 = System.nanoTime();
            try (NDManager root = NDManager.newBaseManager();
                    LlamaModel model = LlamaModel.load(modelOptions.dir(), root);
                    TextTokenizer tok = TextTokenizer.forModel(modelOptions.dir(), model.config());
                dev.morastream.models.adapters.AdapterSet adapters = adapterOption.attach(model)) {
                int w = window == null ? model.config().maxPositionEmbeddings() : window;
                Perplexity.Result r = Perplexity.evaluate(model, tok, text, w, AdapterOption.op(adapters));
                Map<String, Object> o = new LinkedHashMap<>();
                o.put("model", modelOptions.dir().toString());
                o.put("file", file.toString());
                o.put("tokens", r.tokens());
                o.put("loss", r.loss());
                o.put("perplexity", r.perplexity());
                o.put("seconds", (System.nanoTime() - t0) / 1e9);
                if (json) {
                    System.out.println(Json.line(o));
                } else {
                    System.out.printf(Locale.ROOT, "%d tokens  loss %.4f nats/token  perplexity %.3f%n",
                            r.tokens(), r.loss(), r.perplexity());
                }
            }
            return 0;
        }
    }

    /** Exact match and character accuracy on a JSONL task file. */
    @Command(name = "tasks", mixinStandardHelpOptions = true,
            description = "Greedy answers to a JSONL task file ({set, prompt, answer}); exact match and character accuracy per set.")
    public static final class TasksCommand implements Callable<Integer> {
        @Mixin ModelOptions modelOptions;

    @Mixin AdapterOption adapterOption;

        @Option(names = "--file", paramLabel = "JSONL", description = "Task file (default: MODEL/eval/tasks.jsonl).")
        Path file;

        @Option(names = "--max-tokens", defaultValue = "16", description = "Answer budget (default ${DEFAULT-VALUE}).")
        int maxTokens;

        @Option(names = "--json", description = "Print one JSON object per set.")
        boolean json;

        @Override
        public Integer call() throws Exception {
            Path f = file != null ? file : modelOptions.dir().resolve("eval").resolve("tasks.jsonl");
            try (NDManager root = NDManager.newBaseManager();
                    LlamaModel model = LlamaModel.load(modelOptions.dir(), root);
                    TextTokenizer tok = TextTokenizer.forModel(modelOptions.dir(), model.config());
                dev.morastream.models.adapters.AdapterSet adapters = adapterOption.attach(model)) {
                for (TaskSet.Score s : TaskSet.evaluate(new Generator(model, tok, AdapterOption.op(adapters)), TaskSet.load(f), maxTokens)) {
                    if (json) {
                        System.out.println(Json.line(s));
                    } else {
                        System.out.printf(Locale.ROOT, "%-12s %4d items  exact %.3f  char %.3f%n",
                                s.set(), s.items(), s.exactMatch(), s.charAccuracy());
                    }
                }
            }
            return 0;
        }
    }
}
