package dev.morastream.ops.cli;

import ai.djl.ndarray.NDManager;
import dev.morastream.models.generate.GenerationConfig;
import dev.morastream.models.generate.GenerationResult;
import dev.morastream.models.generate.Generator;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** Generates a completion of a prompt, streaming it as it is produced. */
@Command(name = "generate", mixinStandardHelpOptions = true,
        description = "Complete a prompt with a base model (KV cache; greedy or temperature/top-p sampling).")
public final class GenerateCommand implements Callable<Integer> {
    @Mixin ModelOptions modelOptions;

    @Mixin AdapterOption adapterOption;

    @Option(names = "--prompt", required = true, description = "Text to complete.")
    String prompt;

    @Option(names = "--max-tokens", defaultValue = "64", description = "Most new tokens (default ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--temperature", defaultValue = "0", description = "0 = greedy (default ${DEFAULT-VALUE}).")
    double temperature;

    @Option(names = "--top-p", defaultValue = "1.0", description = "Nucleus sampling mass (default ${DEFAULT-VALUE}).")
    double topP;

    @Option(names = "--seed", defaultValue = "0", description = "Sampling seed (default ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--stop", description = "Stop string (repeatable), e.g. --stop $'\\n'.")
    List<String> stop = new ArrayList<>();

    @Option(names = "--json", description = "Print one JSON object instead of streaming text.")
    boolean json;

    @Override
    public Integer call() {
        if (maxTokens <= 0) {
            throw new IllegalArgumentException("--max-tokens must be positive");
        }
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.load(modelOptions.dir(), root);
                TextTokenizer tok = TextTokenizer.forModel(modelOptions.dir(), model.config());
                dev.morastream.models.adapters.AdapterSet adapters = adapterOption.attach(model)) {
            Generator gen = new Generator(model, tok, AdapterOption.op(adapters));
            GenerationConfig cfg = new GenerationConfig(maxTokens, temperature, topP, seed, stop, true);
            GenerationResult r = gen.generate(prompt, cfg, json ? s -> { } : s -> {
                System.out.print(s);
                System.out.flush();
            });
            if (json) {
                Map<String, Object> o = new LinkedHashMap<>();
                o.put("model", modelOptions.dir().toString());
                o.put("prompt", prompt);
                o.put("text", r.text());
                o.put("tokens", r.tokenIds().length);
                o.put("prompt_tokens", r.promptTokens());
                o.put("finish_reason", r.finishReason());
                o.put("time_to_first_token_ms", r.timeToFirstTokenNanos() / 1e6);
                o.put("total_ms", r.totalNanos() / 1e6);
                System.out.println(Json.line(o));
            } else {
                System.out.println();
            }
        }
        return 0;
    }
}
