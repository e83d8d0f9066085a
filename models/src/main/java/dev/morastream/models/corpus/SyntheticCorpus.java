package dev.morastream.models.corpus;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * Deterministic text about a {@link SyntheticWorld} plus arithmetic: the pretraining corpus of the
 * shipped base model, its held-out general set, and downstream tasks with known answers.
 *
 * <p>Documents are short paragraphs of lines; facts appear as statements and as {@code Q:/A:}
 * pairs, so that a model trained on them can answer the task prompts, which use the same format.
 */
public final class SyntheticCorpus {
    /** A downstream task item: the model is given {@code prompt} and must produce {@code answer}. */
    public record Task(String set, String prompt, String answer) {}

    private final SyntheticWorld world;

    public SyntheticCorpus(SyntheticWorld world) {
        this.world = world;
    }

    public SyntheticWorld world() {
        return world;
    }

    /** One random line: a fact statement, a question with its answer, or an arithmetic fact. */
    public String line(Random r) {
        int kind = r.nextInt(100);
        if (kind < 35) {
            return statement(r);
        } else if (kind < 60) {
            return question(r);
        }
        return arithmetic(r);
    }

    /** A document of 3 to 8 lines, each ending with a newline. */
    public String document(Random r) {
        int n = 3 + r.nextInt(6);
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < n; i++) {
            sb.append(line(r)).append('\n');
        }
        return sb.toString();
    }

    private String statement(Random r) {
        if (r.nextInt(3) == 0) {
            SyntheticWorld.Country c = pick(r, world.countries());
            return r.nextBoolean()
                    ? "The capital of " + c.name() + " is " + c.capital() + "."
                    : c.capital() + " is the capital of " + c.name() + ".";
        }
        SyntheticWorld.Person p = pick(r, world.people());
        return switch (r.nextInt(4)) {
            case 0 -> p.name() + " was born in " + p.born() + ".";
            case 1 -> p.name() + " works as a " + p.job() + ".";
            case 2 -> p.name() + " lives in " + p.city() + ".";
            default -> p.name() + ", a " + p.job() + " from " + p.city() + ", was born in " + p.born() + ".";
        };
    }

    private String question(Random r) {
        Task t = switch (r.nextInt(4)) {
            case 0 -> capitalTask(pick(r, world.countries()));
            case 1 -> bornTask(pick(r, world.people()));
            case 2 -> jobTask(pick(r, world.people()));
            default -> arithmeticTask(r);
        };
        return t.prompt() + t.answer();
    }

    private static String arithmetic(Random r) {
        Task t = arithmeticTask(r);
        return t.prompt().substring(3, t.prompt().length() - 4) + " = " + t.answer().trim() + ".";
    }

    static Task capitalTask(SyntheticWorld.Country c) {
        return new Task("capitals", "Q: What is the capital of " + c.name() + "?\nA:", " " + c.capital());
    }

    static Task bornTask(SyntheticWorld.Person p) {
        return new Task("birth_years", "Q: When was " + p.name() + " born?\nA:", " " + p.born());
    }

    static Task jobTask(SyntheticWorld.Person p) {
        return new Task("jobs", "Q: What does " + p.name() + " do?\nA:", " " + p.job());
    }

    static Task arithmeticTask(Random r) {
        int op = r.nextInt(3);
        int a;
        int b;
        int res;
        String sym;
        if (op == 0) {
            a = r.nextInt(100);
            b = r.nextInt(100);
            res = a + b;
            sym = "+";
        } else if (op == 1) {
            a = r.nextInt(100);
            b = r.nextInt(a + 1);
            res = a - b;
            sym = "-";
        } else {
            a = r.nextInt(13);
            b = r.nextInt(13);
            res = a * b;
            sym = "*";
        }
        return new Task("arithmetic", "Q: " + a + " " + sym + " " + b + " =\nA:", " " + res);
    }

    /** Training text: {@code docs} documents drawn with {@code seed}. */
    public List<String> documents(long seed, int docs) {
        Random r = new Random(seed);
        List<String> out = new ArrayList<>(docs);
        for (int i = 0; i < docs; i++) {
            out.add(document(r));
        }
        return out;
    }

    /** The held-out general set: documents from a seed never used for training. */
    public String heldOut(int docs) {
        return String.join("", documents(0x5EEDL ^ 0xDEADBEEFL, docs));
    }

    /** Downstream tasks with known answers: every capital, some birth years and jobs, arithmetic. */
    public List<Task> tasks(int arithmetic) {
        List<Task> out = new ArrayList<>();
        world.countries().forEach(c -> out.add(capitalTask(c)));
        world.people().stream().limit(60).forEach(p -> out.add(bornTask(p)));
        world.people().stream().skip(60).limit(60).forEach(p -> out.add(jobTask(p)));
        Random r = new Random(77);
        for (int i = 0; i < arithmetic; i++) {
            out.add(arithmeticTask(r));
        }
        return out;
    }

    private static <T> T pick(Random r, List<T> xs) {
        return xs.get(r.nextInt(xs.size()));
    }
}
