// Runs Documents/manifest.json once per launch (the contract with profiler/backends/ios.py):
//
//   Documents/manifest.json     job written by the profiler (programs/ next to it)
//   Documents/result.json       result, rewritten after every round by the core
//   Documents/etdump/<i>.etdp   per-operator profiles (when the manifest asks for them)
//   Documents/bench.log         the core's progress lines
//   Documents/done              written last: {"exit_code", "error", "job_id", "finished"}
//
// The profiler passes FBNET_JOB_ID in the launch environment and checks it in `done`, so a
// marker left by an earlier run is never mistaken for this one.
import Foundation
import UIKit

final class BenchJob: ObservableObject {
  @Published private(set) var status = "idle"

  private let documents = FileManager.default.urls(for: .documentDirectory,
                                                   in: .userDomainMask)[0]
  private var started = false

  private func file(_ name: String) -> URL { documents.appendingPathComponent(name) }

  func startIfQueued() {
    guard !started else { return }
    started = true
    try? FileManager.default.removeItem(at: file("done"))
    let manifest = file("manifest.json")
    guard FileManager.default.fileExists(atPath: manifest.path) else {
      status = "No job queued. Run `python -m profiler.run --device iphone_x` on a computer "
        + "connected to this phone; it pushes the job and launches this app."
      return
    }
    // A locked screen suspends the app mid-measurement; keep it awake for the run.
    UIApplication.shared.isIdleTimerDisabled = true
    status = "running \(manifest.lastPathComponent)"
    let jobID = ProcessInfo.processInfo.environment["FBNET_JOB_ID"] ?? ""
    // Off the main thread: the launch watchdog kills apps whose main thread stalls.
    let worker = Thread { [weak self] in self?.run(manifest: manifest, jobID: jobID) }
    worker.qualityOfService = .userInteractive
    worker.stackSize = 8 << 20
    worker.start()
  }

  private func run(manifest: URL, jobID: String) {
    FileManager.default.createFile(atPath: file("bench.log").path, contents: nil)
    let logHandle = try? FileHandle(forWritingTo: file("bench.log"))
    var fatal: NSString?
    let code = FBBenchJob.runManifest(
      atPath: manifest.path, resultPath: file("result.json").path,
      log: { [weak self] line in
        logHandle?.write((line + "\n").data(using: .utf8)!)
        DispatchQueue.main.async { self?.status = line }
      }, fatalMessage: &fatal)
    try? logHandle?.close()

    let marker: [String: Any] = [
      "exit_code": Int(code),
      "error": (fatal as String?) ?? NSNull(),
      "job_id": jobID,
      "finished": ISO8601DateFormatter().string(from: Date()),
    ]
    if let data = try? JSONSerialization.data(withJSONObject: marker, options: [.sortedKeys]) {
      try? data.write(to: file("done"), options: .atomic)
    }
    // One job per launch: exiting tells the host the process is gone and frees the CPU.
    DispatchQueue.main.async { exit(0) }
  }
}
