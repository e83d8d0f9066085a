package dev.morastream.ops.run;

import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A client of one node all along a cluster test: greedy completions one after another, over the
 * base model and each model added since, in turn; every answer that is not a 200 is a failure.
 */
final class ClientLoop implements AutoCloseable {
    private final RunProcessTest.Run node;
    private final List<String> models = new CopyOnWriteArrayList<>(List.of("tiny"));
    private final AtomicBoolean stop = new AtomicBoolean();
    private final AtomicInteger ok = new AtomicInteger();
    private final List<String> failures = Collections.synchronizedList(new ArrayList<>());
    private final Thread thread;

    ClientLoop(RunProcessTest.Run node, String name) {
        this.node = node;
        this.thread = new Thread(this::run, name);
        thread.start();
    }

    /** Asks {@code model} too from now on. */
    void add(String model) {
        models.add(model);
    }

    private void run() {
        int i = 0;
        while (!stop.get()) {
            String model = models.get(i++ % models.size());
            try {
                HttpResponse<String> r = RunProcessTest.http.send(HttpRequest.newBuilder(URI.create(node.base() + "/v1/completions"))
                        .header("Content-Type", "application/json").timeout(Duration.ofSeconds(60))
                        .POST(HttpRequest.BodyPublishers.ofString("{\"model\":\"" + model
                                + "\",\"prompt\":\"Q: What is the capital of Quamoria?\\nA:\",\"max_tokens\":4,\"temperature\":0}")).build(),
                        HttpResponse.BodyHandlers.ofString());
                if (r.statusCode() == 200) {
                    ok.incrementAndGet();
                } else {
                    failures.add(model + ": " + r.statusCode() + " " + r.body());
                }
            } catch (Exception e) {
                failures.add(model + ": " + e);
            }
        }
    }

    /** Stops the loop (after its request in flight). */
    @Override
    public void close() throws InterruptedException {
        stop.set(true);
        thread.join(60_000);
    }

    int ok() {
        return ok.get();
    }

    List<String> failures() {
        return List.copyOf(failures);
    }

    /** The version that answers {@code model} on {@code r} ("" when none). */
    static String servedBy(RunProcessTest.Run r, String model) {
        try {
            HttpResponse<String> resp = RunProcessTest.http.send(HttpRequest.newBuilder(URI.create(r.base() + "/v1/completions"))
                    .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(
                            "{\"model\":\"" + model + "\",\"prompt\":\"Q:\",\"max_tokens\":1}")).build(), HttpResponse.BodyHandlers.ofString());
            return resp.statusCode() == 200 ? RunProcessTest.JSON.readTree(resp.body()).path("adapter_version").asText("") : "";
        } catch (Exception e) {
            return "";
        }
    }
}
