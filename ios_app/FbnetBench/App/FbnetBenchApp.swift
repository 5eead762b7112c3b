// The app is a thin shell around the shared C++ core: on launch it runs the job the
// profiler left in Documents, leaves the results there and exits. See ../README.md.
import SwiftUI

@main
struct FbnetBenchApp: App {
  @StateObject private var job = BenchJob()

  var body: some Scene {
    WindowGroup {
      VStack(alignment: .leading, spacing: 12) {
        Text("fbnet-hw benchmark").font(.headline)
        Text("ExecuTorch \(FBBenchJob.executorchVersion())").font(.subheadline)
        Text(job.status).font(.system(.footnote, design: .monospaced))
        Spacer()
      }
      .padding()
      .frame(maxWidth: .infinity, alignment: .leading)
      .task { job.startIfQueued() }
    }
  }
}
